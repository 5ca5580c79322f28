"""The monthly chargeback on a simulated month: it balances, reads well, and is repeatable.

Figures are checked against sums computed here, independently of the report's
code: straight from ``events FINAL`` with the month cut by ClickHouse's own
time-zone functions, and from the events the real enrichment produced.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterline.reports import ReconciliationMismatch, run_chargeback
from meterline.reports.chargeback import ChargebackRun
from meterline.reports.chargeback_csv import UNATTRIBUTED_TEAM
from meterline.reports.chargeback_ledger import RunLedger
from meterline.reports.chargeback_period import Month
from meterline.schemas import ClickHouseSettings, Event, Settings
from meterline.simulator.organisation import Organisation
from meterline.sinks import migrate, repair_rollups
from tests.harness import unique_prefix
from tests.reports.chargeback_data import (
    JOSE,
    MONTH,
    MONTH_END,
    MONTH_START,
    QUIET,
    ZONE,
    ZURICH,
    call,
    month_envelopes,
    settings_for,
)
from tests.traffic import load_events

pytestmark = pytest.mark.store
TOLERANCE = Decimal("1e-9")


class LoadedMonth:
    def __init__(self, client: Any, database: str, settings: Settings, events: list[Event]) -> None:
        self.client, self.database, self.settings, self.events = client, database, settings, events


@pytest.fixture(scope="module")
def month(_chdb_client: Any, chdb_settings: ClickHouseSettings) -> Iterator[LoadedMonth]:
    """One migrated database holding the month, shared by the read-only tests below."""
    database = "t_" + unique_prefix("cb").replace("-", "_")
    migrate(_chdb_client, chdb_settings, database)
    org = Organisation.demo(seed=11)
    settings = settings_for(org)
    events = load_events(_chdb_client, database, settings, month_envelopes(org))
    yield LoadedMonth(_chdb_client, database, settings, events)
    _chdb_client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="module")
def report(month: LoadedMonth, tmp_path_factory: pytest.TempPathFactory) -> ChargebackRun:
    return run_chargeback(month.client, month.database, month.settings, Month.parse(MONTH),
                          output_dir=tmp_path_factory.mktemp("reports"))


def read_csv(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def ledger_by_team(client: Any, database: str, month: str) -> dict[str, tuple[Decimal, int]]:
    """Σ cost and distinct ids per booked team, straight from events, month cut by ClickHouse."""
    rows = client.query(
        f"SELECT if(attributed, team, %(bucket)s) AS booked, sum(cost_usd), uniqExact(request_id) "
        f"FROM {database}.events FINAL "
        f"WHERE formatDateTime(toTimeZone(received_at, %(zone)s), '%%Y-%%m') = %(month)s "
        f"GROUP BY booked",
        parameters={"bucket": UNATTRIBUTED_TEAM, "zone": ZONE, "month": month}).result_rows
    return {row[0]: (Decimal(row[1]), int(row[2])) for row in rows}


def test_csv_totals_per_team_equal_independent_clickhouse_sums(month: LoadedMonth,
                                                               report: ChargebackRun) -> None:
    rows = read_csv(report.csv)
    charges = [row for row in rows if row["record_type"] == "charge"]
    per_team: dict[str, Decimal] = defaultdict(Decimal)
    requests: dict[str, int] = defaultdict(int)
    for row in charges:
        per_team[row["team"]] += Decimal(row["cost_usd"] or "0")
        requests[row["team"]] += int(row["requests"])
    expected = ledger_by_team(month.client, month.database, MONTH)
    assert expected, "the month has traffic"
    for team, (cost, ids) in expected.items():
        assert abs(per_team[team] - cost) <= TOLERANCE, team
        assert requests[team] == ids, team
    # ... and against the events the enrichment produced, in Python.
    in_month = [e for e in month.events if MONTH_START <= e.received_at < MONTH_END]
    assert sum(per_team.values()) == sum((e.cost_usd for e in in_month), Decimal(0))
    assert sum(requests.values()) == len(in_month)
    (total,) = [row for row in rows if row["record_type"] == "total"]
    assert rows[-1] is total
    assert Decimal(total["cost_usd"]) == sum(per_team.values())
    assert int(total["requests"]) == len(in_month)


def test_csv_has_the_unattributed_and_unpriced_buckets_and_cost_centres(
        month: LoadedMonth, report: ChargebackRun) -> None:
    rows = [row for row in read_csv(report.csv) if row["record_type"] == "charge"]
    unattributed = [row for row in rows if row["team"] == UNATTRIBUTED_TEAM]
    assert unattributed and {row["reported_team"] for row in unattributed} == {"contractors"}
    assert {row["cost_centre"] for row in unattributed} == {"UNATTRIBUTED"}
    assert sum(Decimal(row["cost_usd"]) for row in unattributed) > 0
    unpriced = [row for row in rows if row["pricing"] == "unpriced"]
    assert unpriced and {row["model"] for row in unpriced} == {"acme-coder-34b"}
    assert all(row["cost_usd"] == "" and int(row["input_tokens"]) > 0 for row in unpriced)
    centres = {team.name: team.cost_centre for team in month.settings.teams}
    for row in rows:
        if row["team"] != UNATTRIBUTED_TEAM:
            assert row["cost_centre"] == centres[row["team"]]
    (quiet,) = [row for row in rows if row["team"] == QUIET]
    assert (quiet["cost_centre"], quiet["requests"], quiet["cost_usd"]) == ("CC-0001", "0",
                                                                         "0.000000000000")
    zurich = [row for row in rows if row["team"] == ZURICH]
    assert {row["user"] for row in zurich} == {JOSE} and len(zurich) == 1
    assert zurich[0]["requests"] == "4"  # the boundary seconds outside October are not in it


def test_html_renders_every_team_the_charts_and_the_reconciliation_footer(
        month: LoadedMonth, report: ChargebackRun) -> None:
    html = report.html.read_text(encoding="utf-8")
    for team in month.settings.teams:
        assert f">{team.name}<" in html or f">{team.name} " in html, team.name
    assert "Unattributed" in html and "contractors" in html
    assert "acme-coder-34b" in html and "Unpriced bucket" in html
    assert JOSE in html and "October 2026" in html
    assert html.count("<svg") == 2
    rec = report.chargeback.reconciliation
    assert rec is not None and rec.balanced
    footer = html[html.index("<footer"):]
    assert "balanced" in footer and f"{rec.ledger_cost_usd:,.12f}" in footer
    assert f"{rec.ledger_requests:,}" in footer


def test_month_over_month_change_uses_last_months_spend(month: LoadedMonth,
                                                        report: ChargebackRun) -> None:
    zurich = next(team for team in report.chargeback.teams if team.name == ZURICH)
    september = [e for e in month.events if e.team == ZURICH and e.received_at < MONTH_START
                 and e.received_at.astimezone(MONTH_START.tzinfo).month == 9]
    assert september and zurich.previous_cost_usd == sum((e.cost_usd for e in september),
                                                         Decimal(0))
    assert zurich.change_usd == zurich.cost_usd - zurich.previous_cost_usd


def test_each_lead_gets_a_summary_with_a_stable_ascii_file_name(report: ChargebackRun) -> None:
    assert sorted(path.name for path in report.leads.values()) == sorted(
        ["alice-example-com.txt", "bob-example-com.txt", "chen-example-com.txt",
         "jose-example-com.txt", "quiet-example-com.txt"])
    jose = report.leads["josé@example.com"].read_text(encoding="utf-8")
    assert ZURICH in jose and JOSE in jose and "CC-9900" in jose
    quiet = report.leads["quiet@example.com"].read_text(encoding="utf-8")
    assert "No spend this month." in quiet and "$0.00" in quiet


def test_the_run_is_recorded_in_clickhouse(month: LoadedMonth, report: ChargebackRun) -> None:
    (run,) = [r for r in RunLedger(month.client, month.database).runs("chargeback", MONTH)
              if r.run_id == report.run_id]
    assert run.status == "succeeded" and run.finished_at is not None and run.error == ""
    assert run.total_usd == report.chargeback.cost_usd
    assert run.requests == report.chargeback.requests
    assert sorted(run.files) == sorted(str(path) for path in report.files)


def test_an_empty_month_balances_at_zero_with_every_team(month: LoadedMonth,
                                                         tmp_path: Path) -> None:
    run = run_chargeback(month.client, month.database, month.settings, Month.parse("2027-02"),
                         output_dir=tmp_path)
    rows = read_csv(run.csv)
    assert {row["team"] for row in rows if row["record_type"] == "charge"} == {
        team.name for team in month.settings.teams}
    assert rows[-1]["record_type"] == "total" and Decimal(rows[-1]["cost_usd"]) == 0
    html = run.html.read_text(encoding="utf-8")
    assert "No spend this month." in html and "balanced" in html
    assert "None: every call this month was priced." in html


def test_rerunning_a_month_replaces_its_files(month: LoadedMonth, tmp_path: Path) -> None:
    first = run_chargeback(month.client, month.database, month.settings, Month.parse(MONTH),
                           output_dir=tmp_path)
    stale = first.directory / "leads" / "someone-who-left.txt"
    stale.write_text("old")
    second = run_chargeback(month.client, month.database, month.settings, Month.parse(MONTH),
                            output_dir=tmp_path)
    assert second.directory == first.directory and second.csv == first.csv
    assert not stale.exists()
    assert second.csv.read_bytes() == first.csv.read_bytes()
    assert sorted(p.name for p in tmp_path.joinpath("chargeback").iterdir()) == [MONTH]
    runs = RunLedger(month.client, month.database).runs("chargeback", MONTH)
    assert {first.run_id, second.run_id} <= {r.run_id for r in runs if r.status == "succeeded"}


def test_a_report_that_does_not_reconcile_fails_loudly_and_writes_nothing(
        clickhouse: tuple[Any, str], tmp_path: Path) -> None:
    client, database = clickhouse
    settings = settings_for(Organisation.demo(seed=2))
    load_events(client, database, settings, [call(MONTH_START), call(MONTH_START + timedelta(days=19))])
    good = run_chargeback(client, database, settings, Month.parse(MONTH), output_dir=tmp_path)
    before = good.csv.read_bytes()
    # A raw re-insert into the rollup: the double count the duplicate-safe path exists to prevent.
    client.command(f"INSERT INTO {database}.spend_hourly (hour, team, attributed, requests, cost_usd)"
                   f" VALUES ('2026-10-10 10:00:00', {ZURICH!r}, true, 1, 0.25)")
    with pytest.raises(ReconciliationMismatch, match=r"difference 0\.25"):
        run_chargeback(client, database, settings, Month.parse(MONTH), output_dir=tmp_path,
                       recheck_delay_s=0)
    assert good.csv.read_bytes() == before
    assert [p.name for p in tmp_path.joinpath("chargeback").iterdir()] == [MONTH]
    failed = [r for r in RunLedger(client, database).runs("chargeback", MONTH) if r.status == "failed"]
    assert len(failed) == 1 and "ReconciliationMismatch" in failed[0].error


def test_a_repriced_request_counts_once_at_its_latest_price(clickhouse: tuple[Any, str],
                                                            tmp_path: Path) -> None:
    """Re-pricing as the sinks do it: a version-2 event, then the rollup's delta repair."""
    client, database = clickhouse
    settings = settings_for(Organisation.demo(seed=2))
    event, other = load_events(client, database, settings,
                               [call(MONTH_START + timedelta(hours=5)), call(MONTH_START)])
    repriced = event.model_copy(update={"version": 2, "cost_usd": Decimal("7.000000000001")})
    client.raw_insert(f"{database}.events", insert_block=repriced.model_dump_json().encode(),
                      fmt="JSONEachRow", settings={"date_time_input_format": "best_effort"})
    repair_rollups(client, database, event.received_at, event.received_at + timedelta(hours=1))
    run = run_chargeback(client, database, settings, Month.parse(MONTH), output_dir=tmp_path)
    assert run.chargeback.requests == 2
    assert run.chargeback.cost_usd == Decimal("7.000000000001") + other.cost_usd
    rec = run.chargeback.reconciliation
    assert rec is not None and rec.balanced
