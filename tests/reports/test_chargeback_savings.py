"""Routing savings in the ledger and the chargeback (migration 0100, ``chargeback_savings``).

Rows are made by the real enrichment and stored in a migrated database; the
figures are checked against sums computed here from the events themselves.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterline.processors import Directory, PriceBook
from meterline.processors.enrich import encode_event_row, enrich, event_row
from meterline.processors.reprice import reprice_row
from meterline.reports import run_chargeback
from meterline.reports.chargeback_period import Month
from meterline.schemas import Envelope, PriceOverride, Routing, Settings
from meterline.sinks import EventWriter
from meterline.sinks.reprice import reprice_range
from tests.harness import REPO_ROOT
from tests.reports.chargeback_data import call

pytestmark = pytest.mark.store

MONTH = Month.parse("2026-10")
SETTINGS = Settings(teams=[{"name": "platform", "cost_centre": "CC-4100",
                            "lead": "pat@example.com"},
                           {"name": "payments", "cost_centre": "CC-5200"}])
KINDS = {name: p.kind for name, p in SETTINGS.providers.items()}
ENFORCED = Routing(rule="docs-to-haiku", from_provider="anthropic",
                   from_model="claude-sonnet-4-5")
SHADOWED = Routing(from_provider="anthropic", from_model="claude-sonnet-4-5",
                   shadow_rule="small-to-haiku", shadow_provider="anthropic",
                   shadow_model="claude-haiku-4-5")


def month_calls() -> list[Envelope]:
    """Plain calls, calls an enforce rule moved to haiku, and calls a shadow rule watched."""
    out = []
    for day in range(1, 29):
        at = datetime(2026, 10, day, 10, tzinfo=UTC)
        for index, team in enumerate(("platform", "payments", "contractors")):
            base = call(at + timedelta(minutes=index), team=team, user="alice",
                        input_tokens=10_000 + day * 97, output_tokens=500 + day * 13)
            out.append(base)
            out.append(call(at + timedelta(minutes=10 + index), team=team, user="bob",
                            model="claude-haiku-4-5", input_tokens=8_000 + day,
                            output_tokens=300).model_copy(update={
                                "requested_model": "claude-sonnet-4-5", "routing": ENFORCED}))
            out.append(call(at + timedelta(minutes=20 + index), team=team, user="carol",
                            input_tokens=2_000 + day, output_tokens=100).model_copy(update={
                                "routing": SHADOWED}))
    return out


def store(client: Any, database: str, envelopes: list[Envelope], book: PriceBook) -> None:
    directory = Directory(SETTINGS)
    EventWriter(client, database).write(
        [(e.request_id, encode_event_row(event_row(e, directory, book))) for e in envelopes])


def book() -> PriceBook:
    return PriceBook([], KINDS)


def test_the_store_gives_every_row_its_counterfactual(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    envelopes = month_calls()
    store(client, database, envelopes, book())
    rows = client.query(f"SELECT routing_mode, count(), countIf(counterfactual_cost_usd = "
                        f"cost_usd), countIf(shadow_cost_usd > 0) FROM {database}.events "
                        "GROUP BY routing_mode ORDER BY routing_mode").result_rows
    each = len(envelopes) // 3
    assert rows == [("", each, each, 0), ("enforce", each, 0, 0), ("shadow", each, each, each)]
    # the event as the enrichment prices it is the row as stored
    moved = next(e for e in envelopes if e.routing == ENFORCED)
    event = enrich(moved, Directory(SETTINGS), book())
    stored = client.query(f"SELECT cost_usd, counterfactual_cost_usd, counterfactual_model FROM "
                          f"{database}.events WHERE request_id = '{moved.request_id}'"
                          ).result_rows[0]
    assert stored == (event.cost_usd, event.counterfactual_cost_usd, "claude-sonnet-4-5")
    assert event.counterfactual_cost_usd is not None
    assert event.counterfactual_cost_usd > event.cost_usd  # sonnet costs more than haiku


def test_the_chargeback_shows_savings_per_team_and_rule_to_the_cent(
        clickhouse: tuple[Any, str], tmp_path: Path) -> None:
    client, database = clickhouse
    envelopes = month_calls()
    store(client, database, envelopes, book())
    events = [enrich(e, Directory(SETTINGS), book()) for e in envelopes]
    run = run_chargeback(client, database, SETTINGS, MONTH, output_dir=tmp_path, deliver=False)
    savings = run.chargeback.savings
    assert savings is not None and savings.balanced
    expected_saved = sum((e.counterfactual_cost_usd - e.cost_usd for e in events
                          if e.routing_rule and e.counterfactual_cost_usd is not None),
                         Decimal(0))
    expected_would = sum((e.cost_usd - e.shadow_cost_usd for e in events if e.shadow_rule),
                         Decimal(0))
    assert expected_saved > 0 and expected_would > 0
    assert (savings.total_saved_usd, savings.total_would_save_usd) == (expected_saved,
                                                                       expected_would)
    teams = [("platform", True), ("payments", True), ("", False)]
    assert sum(savings.team_saved_usd(attributed, team) for team, attributed in teams) == \
        expected_saved
    for team, attributed in teams:
        mine = [e for e in events if (e.attributed, e.team if e.attributed else "") ==
                (attributed, team)]
        assert savings.team_would_save_usd(attributed, team) == sum(
            (e.cost_usd - e.shadow_cost_usd for e in mine if e.shadow_rule), Decimal(0))
        (enforced,) = [row for row in savings.for_team(attributed, team) if row.mode == "enforce"]
        assert (enforced.rule, enforced.requests) == ("docs-to-haiku", 28)
    summary = run.summary()
    assert (summary["routing_saved_usd"], summary["shadow_would_save_usd"]) == (
        expected_saved, expected_would)
    html = run.html.read_text(encoding="utf-8")
    assert "Routing savings" in html and "docs-to-haiku" in html and "small-to-haiku" in html
    assert f"saved {expected_saved:,.12f} USD" in html
    lead = run.leads["pat@example.com"].read_text(encoding="utf-8")
    platform_saved = savings.team_saved_usd(True, "platform")
    assert f"Routing:    saved ${platform_saved.quantize(Decimal('0.01')):,}" in lead


def test_repricing_moves_the_counterfactual_with_the_book(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    envelopes = month_calls()[:30]
    store(client, database, envelopes, book())
    dearer = PriceBook([PriceOverride(model="claude-sonnet-4-5", input_per_mtok=30,
                                      output_per_mtok=150)], KINDS)
    reprice_range(client, database, datetime(2026, 10, 1, tzinfo=UTC),
                  datetime(2026, 11, 1, tzinfo=UTC), lambda row: reprice_row(row, dearer),
                  lock=threading.RLock())
    rows = client.query(f"SELECT routing_mode, toString(sum(counterfactual_cost_usd)), "
                        f"toString(sum(cost_usd)) FROM {database}.events FINAL "
                        "GROUP BY routing_mode").result_rows
    priced = {mode: (Decimal(cf), Decimal(cost)) for mode, cf, cost in rows}
    expected = [enrich(e, Directory(SETTINGS), dearer) for e in envelopes]
    moved = sum((e.counterfactual_cost_usd for e in expected
                 if e.counterfactual_cost_usd is not None), Decimal(0))
    assert priced["enforce"][0] == moved  # the requested model at its new price
    assert priced[""][0] == priced[""][1]  # a plain row's counterfactual is its new cost


def test_the_routing_docs_savings_queries_run(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    recent = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    store(client, database, [e.model_copy(update={"received_at": recent + timedelta(seconds=i)})
                             for i, e in enumerate(month_calls()[:30])], book())
    blocks = re.findall(r"```sql\n(.*?)```", (REPO_ROOT / "docs/routing.md").read_text(), re.S)
    savings = [sql for sql in blocks if "counterfactual_cost_usd" in sql or "shadow_" in sql]
    assert len(savings) >= 2
    for sql in savings:
        rows = client.query(sql.replace("FROM events", f"FROM {database}.events")).result_rows
        assert rows, sql
