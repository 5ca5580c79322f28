"""Dashboard benchmark: how long each /ui page takes over a month of N synthetic events.

Loads the chargeback benchmark's synthetic month (``INSERT … SELECT`` from
``numbers()`` into a private chdb path, 200 users in 8 teams plus
unattributed contractors, 1% unpriced; a tenth of N in the month before) and
then measures the dashboard the way a browser meets it: the real store query
endpoint (``QueryServer`` on a read-only client) behind the real dashboard app
(``create_ui_app``) served by uvicorn, pages fetched over HTTP with a logged-in
admin session. Each time is the whole page: every query, the HTTP hops, the
table building and the Jinja2 rendering.

Target (issue 11): a page over a month of 10M events opens in well under a
second on 2 cores.

Run: ``python bench/ui_bench.py --events 1000000`` (``--events 10000000`` for
the full size; loading takes a few minutes). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import uvicorn
from pydantic import SecretStr

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from chargeback_bench import DATABASE, MONTH, TEAMS, load  # noqa: E402

from meterline.embedded import free_port, wait_for_port  # noqa: E402
from meterline.ingest.auth import hash_key, key_id_for  # noqa: E402
from meterline.ingest.ui import create_ui_app  # noqa: E402
from meterline.schemas import ClickHouseSettings, Settings  # noqa: E402
from meterline.schemas.store_auth import new_token  # noqa: E402
from meterline.sinks import QueryServer, StoreAccess, connect, migrate  # noqa: E402

ADMIN_KEY = "ml-bench-admin-key-not-a-secret"


def pages(team: str) -> list[tuple[str, str]]:
    """(name, path and query) of each page timed, over the benchmark's month."""
    window = f"from={MONTH.year}-{MONTH.month:02d}-01&to={MONTH.year}-{MONTH.month:02d}-31"
    return [
        ("overview (month)", f"/ui/overview?{window}"),
        ("overview, one tool and model", f"/ui/overview?{window}&tool=cursor&model=gpt-5"),
        (f"team {team} (incl. top requests from events FINAL)", f"/ui/team/{team}?{window}"),
        (f"team {team}, developers CSV", f"/ui/team/{team}?{window}&csv=developers"),
        ("key inventory", f"/ui/keys?{window}"),
        ("unpriced and unattributed", f"/ui/buckets?{window}"),
        ("anomalies and alerts", f"/ui/activity?{window}"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--path", default="", help="chdb data path (default: a temporary one)")
    parser.add_argument("--runs", type=int, default=5, help="timed fetches of each page")
    args = parser.parse_args()
    path = Path(args.path or tempfile.mkdtemp(prefix="meterline-ui-bench-"))
    chdb = ClickHouseSettings(dsn=f"chdb://{path}", database=DATABASE)
    digest = hash_key(ADMIN_KEY)
    settings = Settings(timezone="Europe/Berlin", clickhouse=chdb,
                        teams=[{"name": team, "cost_centre": f"CC-{4100 + i}",
                                "budget_usd": 20_000} for i, team in enumerate(TEAMS)],
                        keys=[{"id": key_id_for(digest), "sha256": digest, "user": "bench",
                               "team": TEAMS[0], "admin": True}])
    client = connect(chdb)
    client.command(f"DROP DATABASE IF EXISTS {DATABASE}")
    migrate(client, chdb, DATABASE)
    load_s = load(client, args.events, settings)
    client.command(f"OPTIMIZE TABLE {DATABASE}.spend_hourly FINAL")
    rollup_rows = client.query(f"SELECT count() FROM {DATABASE}.spend_hourly").result_rows[0][0]

    token = new_token()
    queries = QueryServer(connect(chdb, readonly=True, database=DATABASE), "127.0.0.1", 0,
                          access=StoreAccess(read_token=token, operator_token=new_token()))
    settings = settings.model_copy(update={"store": settings.store.model_copy(
        update={"read_token": SecretStr(token)})})
    queries.start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_ui_app(settings, queries.url), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait_for_port("127.0.0.1", port, 15)
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = opener.open(base + "/ui/login").read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None, "the login form carries a CSRF token"
    opener.open(base + "/ui/login", data=urllib.parse.urlencode(
        {"key": ADMIN_KEY, "csrf": csrf.group(1)}).encode())

    results: list[tuple[str, list[float], int]] = []
    for name, target in pages(TEAMS[0]):
        times: list[float] = []
        size = 0
        for _ in range(args.runs + 1):  # the first fetch warms caches and is not counted
            started = time.perf_counter()
            with opener.open(base + target, timeout=120) as response:
                if response.status != 200 or response.url.endswith("/ui/login"):
                    raise SystemExit(f"{target}: HTTP {response.status} at {response.url}")
                size = len(response.read())
            times.append(time.perf_counter() - started)
        results.append((name, times[1:], size))
    server.should_exit = True
    queries.stop()

    print(f"\ndashboard pages over {MONTH}, {args.events:,} events (+{args.events // 10:,} in the "
          f"month before), rollup {rollup_rows:,} rows after OPTIMIZE; load {load_s:.1f} s\n")
    print(f"| page | median ms | worst ms (of {args.runs}) | bytes |")
    print("| --- | ---: | ---: | ---: |")
    for name, times, size in results:
        print(f"| {name} | {statistics.median(times) * 1000:.0f} | {max(times) * 1000:.0f} | {size:,} |")
    if not args.path:
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
