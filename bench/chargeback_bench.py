"""Chargeback benchmark: one month's chargeback over N synthetic events, timed per step.

Loads ``--events`` synthetic events into a private chdb database with
ClickHouse itself (``INSERT … SELECT … FROM numbers()``, in chunks), so the
``spend_hourly`` materialized view fills exactly as the sink's inserts fill
it. The traffic has the attribution shape of a real organisation: 200 users
in 8 teams (plus 2% unattributed), each user with three repositories, two
tools and a few models, 1% of calls to an unpriced model, all spread over the
month in time order. A tenth of N lands in the previous month, for the
month-over-month column.

It then times the chargeback's queries one by one and the whole run
(``run_chargeback``: queries, reconciliation, HTML, CSV, lead summaries,
ledger) and prints a markdown table. Target: ≤ 10 s at 10M events on 2 cores.

Run: ``python bench/chargeback_bench.py --events 1000000`` (add
``--events 10000000`` for the full-size run; loading takes a few minutes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from meterline.reports import Month, run_chargeback  # noqa: E402
from meterline.reports.chargeback_query import (  # noqa: E402
    fetch_daily,
    fetch_lines,
    fetch_team_totals,
    ledger_totals,
)
from meterline.schemas import ClickHouseSettings, Settings  # noqa: E402
from meterline.sinks import connect, migrate  # noqa: E402

T = TypeVar("T")
DATABASE = "bench"
MONTH = Month(2026, 10)
TEAMS = ("platform", "payments", "data", "mobile", "search", "growth", "security", "infra")
MODELS = ("['anthropic','anthropic','anthropic','openai','openai','openai','openai','openai',"
          "'vllm']", "['claude-sonnet-4-5','claude-haiku-4-5','claude-opus-4-1','gpt-5',"
          "'gpt-4o-mini','gpt-4.1','text-embedding-3-small','gpt-4o','acme-coder-34b']")
#: USD per million input / output tokens, by model index (the unpriced model is 0).
PRICES = ("[3, 1, 15, 1.25, 0.15, 2, 0.02, 2.5, 0]", "[15, 5, 75, 10, 0.6, 8, 0, 10, 0]")


def _insert_sql(start_s: int, span_s: int, total: int, offset: int, first: int,
                count: int) -> str:
    """Events ``first … first+count`` of ``total``, evenly spread over [start, start+span).

    ``offset`` keeps request ids of different months apart.
    """
    providers, models = MODELS
    input_price, output_price = PRICES
    teams = "[" + ",".join(f"'{t}'" for t in TEAMS) + "]"
    return f"""
    INSERT INTO {DATABASE}.events (request_id, version, schema_version, received_at, done_at,
        surface, provider, requested_model, served_model, key_id, user, team, cost_centre, repo,
        repo_source, tool, user_agent, status, outcome, error_class, stream, input_tokens,
        output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
        reasoning_tokens, usage_source, upstream_ms, gateway_ms, request_bytes, response_bytes,
        body_policy, request_sha256, response_sha256, input_cost_usd, output_cost_usd, cost_usd,
        price_source, unit_prices, price_version, price_model, unpriced, attributed, pii_found,
        policy_breach)
    SELECT request_id, 1, '1.0', received_at, received_at + 2, 'openai.chat', provider, model,
        model, concat('key_', leftPad(toString(u), 12, '0')), concat('user', toString(u)),
        team, if(attributed, concat('CC-', toString(4100 + t)), ''), repo, 'header', tool, '',
        if(n % 67 = 0, 500, 200), if(n % 67 = 0, 'upstream_error', 'ok'), '', true, inp, outp,
        cached, 0, 0, 0, 'provider', 800, 0.5, 4000, 900, 'hash', '', '', in_cost, out_cost,
        in_cost + out_cost, if(unpriced, 'none', 'genai-prices'), '{{}}', 'bench', model,
        unpriced, attributed, false, false
    FROM (
        SELECT number AS n, concat('bench-', leftPad(toString(number), 12, '0')) AS request_id,
            toDateTime64({start_s} + intDiv((number - {offset}) * {span_s}, {total}), 6, 'UTC')
                + toIntervalMicrosecond(number % 1000000) AS received_at,
            n % 200 AS u, u % 8 AS t, (u % 50) != 49 AS attributed,
            if(attributed, {teams}[t + 1], 'contractors') AS team,
            concat('acme/repo-', toString((u * 7 + intDiv(n, 8) % 3) % 60)) AS repo,
            ['claude-code', 'codex', 'cursor', 'openai-python'][(u + intDiv(n, 32) % 2) % 4 + 1]
                AS tool,
            if(n % 100 = 7, 9, (u * 3 + intDiv(n, 128) % 3) % 8 + 1) AS m,
            {providers}[m] AS provider, {models}[m] AS model, m = 9 AS unpriced,
            1000 + n % 30000 AS inp, 100 + n % 1500 AS outp, (n % 7) * 1000 AS cached,
            toDecimal128(inp, 12) * toDecimal128({input_price}[m], 12) / 1000000 AS in_cost,
            toDecimal128(outp, 12) * toDecimal128({output_price}[m], 12) / 1000000 AS out_cost
        FROM numbers({offset + first}, {count}))"""


def load(client: Any, events: int, settings: Settings, chunk: int = 1_000_000) -> float:
    """Insert ``events`` into the month and a tenth as many into the month before."""
    started = time.perf_counter()
    for month, count, offset in ((MONTH, events, 0), (MONTH.previous(), events // 10, events)):
        window = month.window(settings.timezone)
        start_s = int(window.start.timestamp())
        span_s = int((window.end - window.start).total_seconds())
        for first in range(0, count, chunk):
            client.command(_insert_sql(start_s, span_s, count, offset, first,
                                       min(chunk, count - first)))
    return time.perf_counter() - started


def timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--path", default="", help="chdb data path (default: a temporary one)")
    parser.add_argument("--runs", type=int, default=3, help="timed report runs (best and worst)")
    parser.add_argument("--no-optimize", action="store_true",
                        help="time the rollup as inserted, before background merges")
    args = parser.parse_args()
    path = Path(args.path or tempfile.mkdtemp(prefix="meterline-chargeback-bench-"))
    chdb = ClickHouseSettings(dsn=f"chdb://{path}", database=DATABASE)
    settings = Settings(timezone="Europe/Berlin", clickhouse=chdb,
                        reports={"output_dir": str(path / "reports")},
                        teams=[{"name": team, "cost_centre": f"CC-{4100 + i}",
                                "lead": f"lead{i}@example.com"} for i, team in enumerate(TEAMS)])
    client = connect(chdb)
    client.command(f"DROP DATABASE IF EXISTS {DATABASE}")
    migrate(client, chdb, DATABASE)
    load_s = load(client, args.events, settings)
    if not args.no_optimize:
        client.command(f"OPTIMIZE TABLE {DATABASE}.spend_hourly FINAL")
    rollup_rows = client.query(f"SELECT count() FROM {DATABASE}.spend_hourly").result_rows[0][0]
    window = MONTH.window(settings.timezone)
    steps: list[tuple[str, float, str]] = []
    seconds, lines = timed(lambda: fetch_lines(client, DATABASE, window))
    steps.append(("lines (rollup, finest grain)", seconds, f"{len(lines):,} rows"))
    seconds, daily = timed(lambda: fetch_daily(client, DATABASE, window))
    steps.append(("daily (rollup)", seconds, f"{len(daily):,} rows"))
    seconds, _ = timed(lambda: fetch_team_totals(client, DATABASE, MONTH.previous().window(
        settings.timezone)))
    steps.append(("previous month (rollup)", seconds, ""))
    seconds, ledger = timed(lambda: ledger_totals(client, DATABASE, window))
    steps.append(("reconciliation (events FINAL)", seconds, f"{ledger.requests:,} ids"))
    runs = [timed(lambda: run_chargeback(client, DATABASE, settings, MONTH, deliver=False))[0]
            for _ in range(args.runs)]
    print(f"\nchargeback {MONTH}, {args.events:,} events (+{args.events // 10:,} in the month "
          f"before), rollup {rollup_rows:,} rows "
          f"{'as inserted' if args.no_optimize else 'after OPTIMIZE'}; load {load_s:.1f} s\n")
    print("| step | seconds | rows |")
    print("| --- | ---: | --- |")
    for name, secs, note in steps:
        print(f"| {name} | {secs:.3f} | {note} |")
    print(f"| **run_chargeback, end to end** (best of {len(runs)}) | {min(runs):.3f} | "
          f"worst {max(runs):.3f} s |")
    if not args.path:
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
