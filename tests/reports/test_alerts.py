"""Budget alerts end to end: real spend in ClickHouse, the real job, Slack on loopback.

Each test stores controlled spend through the processors' enrichment and the
sink's writer, runs the alert check as the scheduler does, and asserts on the
Block Kit payloads the Slack stand-in received and on the alert ledger.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterline.reports import BudgetAlerts, create_scheduler, register_alert_job
from meterline.schemas import KeySettings, UserSettings
from meterline.schemas.governance import KeyEvent
from meterline.sinks.key_events import COLUMNS, row_of
from tests.reports.budget_traffic import alert_settings, ledger_rows, spend
from tests.reports.slack_stub import SlackStub, running_stub

pytestmark = pytest.mark.store

NOV_10 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    yield from running_stub()


def fields_of(payload: dict[str, Any]) -> dict[str, str]:
    """The Block Kit section fields as {title: value}."""
    fields = payload["blocks"][1]["fields"]
    pairs = (field["text"].split("\n", 1) for field in fields)
    return {title.strip("*"): value for title, value in pairs}


def test_crossing_80_sends_one_rerun_none_crossing_100_one_more(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url)
    alerts = BudgetAlerts(*clickhouse, settings)
    spend(clickhouse, settings, 50, NOV_10 - timedelta(days=3))
    assert alerts.check(NOV_10) == []

    spend(clickhouse, settings, 35, NOV_10 - timedelta(hours=2), user="bob", repo="acme/web")
    (outcome,) = alerts.check(NOV_10)
    assert outcome.status == "sent" and outcome.ref.alert == "80%"
    assert len(slack.payloads) == 1
    payload = slack.payloads[0]
    assert payload["blocks"][0] == {"type": "header", "text": {
        "type": "plain_text", "text": "Budget alert: team platform passed 80%"}}
    assert fields_of(payload) == {
        "Team": "platform", "Period": "November 2026 (UTC)",
        "Spend vs budget": "$85.00 of $100.00", "Used": "85%",
        "Projection": fields_of(payload)["Projection"]}
    drivers = payload["blocks"][2]["text"]["text"]
    assert "*Users:* alice $50.00, bob $35.00" in drivers
    assert "*Models:* meter-1 $85.00" in drivers
    assert "*Repos:* acme/platform-api $50.00, acme/web $35.00" in drivers
    dig_in = payload["blocks"][3]["text"]["text"]
    assert "meterline sql --param=subject=platform" in dig_in
    assert "team = {subject:String}" in dig_in
    assert "platform has used 85%" in payload["text"]

    assert alerts.check(NOV_10) == []
    assert alerts.check(NOV_10 + timedelta(hours=1)) == []
    assert len(slack.payloads) == 1

    spend(clickhouse, settings, 20, NOV_10 + timedelta(hours=3))
    (outcome,) = alerts.check(NOV_10 + timedelta(hours=4))
    assert outcome.ref.alert == "100%"
    assert len(slack.payloads) == 2
    assert slack.headers_of(1) == "Budget reached: team platform at 105%"
    assert fields_of(slack.payloads[1])["Spend vs budget"] == "$105.00 of $100.00"
    assert alerts.check(NOV_10 + timedelta(hours=5)) == []
    assert len(slack.payloads) == 2
    assert ledger_rows(clickhouse) == [
        ("team:platform:2026-11:80%", "claimed"), ("team:platform:2026-11:80%", "sent"),
        ("team:platform:2026-11:100%", "claimed"), ("team:platform:2026-11:100%", "sent")]


def test_jumping_past_both_thresholds_sends_one_message(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url)
    spend(clickhouse, settings, 120, NOV_10 - timedelta(hours=1))
    alerts = BudgetAlerts(*clickhouse, settings)
    (outcome,) = alerts.check(NOV_10)
    assert (outcome.ref.alert, outcome.superseded) == ("100%", ("80%",))
    assert alerts.check(NOV_10) == []
    assert len(slack.payloads) == 1
    assert ("team:platform:2026-11:80%", "superseded") in ledger_rows(clickhouse)


def test_restart_and_replayed_events_send_nothing_twice(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url)
    event = spend(clickhouse, settings, 90, NOV_10 - timedelta(hours=1))
    assert [o.status for o in BudgetAlerts(*clickhouse, settings).check(NOV_10)] == ["sent"]

    client, database = clickhouse
    from meterline.sinks import EventWriter

    replayed = EventWriter(client, database).write([(event.request_id,
                                                     event.model_dump_json().encode())])
    assert replayed == 0
    restarted = BudgetAlerts(*clickhouse, settings)
    assert restarted.check(NOV_10 + timedelta(minutes=5)) == []
    assert len(slack.payloads) == 1


def test_a_second_scheduler_instance_sends_nothing_extra(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url)
    spend(clickhouse, settings, 82, NOV_10 - timedelta(hours=1))
    client, database = clickhouse
    ran = [threading.Event(), threading.Event()]
    schedulers = []
    for done in ran:
        scheduler = create_scheduler(settings)
        alerts = register_alert_job(scheduler, settings, client, database=database,
                                    clock=lambda: NOV_10)
        assert alerts is not None
        scheduler.add_listener(lambda _event, done=done: done.set())
        schedulers.append(scheduler)
    for scheduler in schedulers:
        scheduler.start()
    try:
        assert all(done.wait(30) for done in ran)
    finally:
        for scheduler in schedulers:
            scheduler.shutdown(wait=True)
    assert len(slack.payloads) == 1
    assert [state for _, state in ledger_rows(clickhouse)] == ["claimed", "sent"]


def test_period_boundary_in_tokyo_counts_spend_on_the_local_day(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url, timezone="Asia/Tokyo")
    alerts = BudgetAlerts(*clickhouse, settings)
    # 10:00 UTC on 31 Oct is 19:00 in Tokyo: October there.
    spend(clickhouse, settings, 85, datetime(2026, 10, 31, 10, 0, tzinfo=UTC))
    (october,) = alerts.check(datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    assert (october.ref.period, october.ref.alert) == ("2026-10", "80%")
    # 20:00 UTC on 31 Oct is 05:00 on 1 Nov in Tokyo: a new period, starting clean.
    # Cut in UTC it would still be October, with $175 spent, and send "100%" for 2026-10.
    spend(clickhouse, settings, 90, datetime(2026, 10, 31, 20, 0, tzinfo=UTC))
    (november,) = alerts.check(datetime(2026, 10, 31, 21, 0, tzinfo=UTC))
    assert (november.ref.period, november.ref.alert) == ("2026-11", "80%")
    assert fields_of(slack.payloads[1])["Period"] == "November 2026 (Asia/Tokyo)"
    assert fields_of(slack.payloads[1])["Spend vs budget"] == "$90.00 of $100.00"
    assert len(slack.payloads) == 2


def test_forecast_warns_once_before_the_budget_is_crossed(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url, forecast=True, forecast_min_elapsed_h=48)
    for day in range(1, 10):
        spend(clickhouse, settings, 5, datetime(2026, 11, day, 12, 0, tzinfo=UTC))
    alerts = BudgetAlerts(*clickhouse, settings)
    assert alerts.check(datetime(2026, 11, 2, 13, 0, tzinfo=UTC)) == []  # too early to project

    (outcome,) = alerts.check(datetime(2026, 11, 10, 0, 0, tzinfo=UTC))
    assert outcome.ref.alert == "forecast"
    payload = slack.payloads[0]
    assert slack.headers_of(0) == "Budget forecast: team platform on pace to exceed"
    # $35 over the trailing week is $5/day: $45 + 21 days x $5 = $150 by 1 Dec.
    assert fields_of(payload)["Projection"] == (
        "$150.00 by period end\nbudget reached around Sat 21 Nov 00:00 (UTC)")
    assert alerts.check(datetime(2026, 11, 10, 1, 0, tzinfo=UTC)) == []

    spend(clickhouse, settings, 40, datetime(2026, 11, 10, 2, 0, tzinfo=UTC))
    (threshold,) = alerts.check(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
    assert threshold.ref.alert == "80%"
    assert len(slack.payloads) == 2


def test_user_and_key_budgets_alert_the_team(clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    users = [UserSettings(name="alice", team="platform", budget_usd=Decimal(20)),
             UserSettings(name="bob", team="platform")]
    keys = [KeySettings(id="key_00000000b0b0", sha256="0" * 64, user="bob", team="platform",
                        budget_usd=Decimal(2))]
    settings = alert_settings(slack.url, users=users, keys=keys)
    spend(clickhouse, settings, 25, NOV_10 - timedelta(hours=1), user="alice")
    spend(clickhouse, settings, 1, NOV_10 - timedelta(hours=1), model="meter-unpriced")
    spend(clickhouse, settings, 3, NOV_10 - timedelta(hours=1), user="bob",
          key_id="key_00000000b0b0")
    outcomes = BudgetAlerts(*clickhouse, settings).check(NOV_10)
    assert [o.ref.key for o in outcomes] == ["user:alice:2026-11:100%",
                                             "key:key_00000000b0b0:2026-11:100%"]
    alice, key = slack.payloads
    assert slack.headers_of(0) == "Budget reached: user alice (platform) at 125%"
    assert fields_of(alice)["User"] == "alice"
    assert "1 unpriced requests" in alice["blocks"][3]["elements"][0]["text"]
    assert slack.headers_of(1) == "Budget reached: key key_00000000b0b0 (platform) at 150%"
    assert fields_of(key)["Key"] == "key_00000000b0b0"
    assert "key_id = {subject:String}" in key["blocks"][3]["text"]["text"]
    assert "--param=subject=key_00000000b0b0 " in key["blocks"][3]["text"]["text"]


def test_a_new_period_starts_clean(clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url, team={"budget_period": "week"})
    alerts = BudgetAlerts(*clickhouse, settings)
    spend(clickhouse, settings, 85, datetime(2026, 11, 13, 9, tzinfo=UTC))  # Friday, week 46
    assert [o.ref.key for o in alerts.check(datetime(2026, 11, 13, 10, tzinfo=UTC))] == [
        "team:platform:2026-W46:80%"]
    spend(clickhouse, settings, 85, datetime(2026, 11, 16, 9, tzinfo=UTC))  # Monday, week 47
    assert [o.ref.key for o in alerts.check(datetime(2026, 11, 16, 10, tzinfo=UTC))] == [
        "team:platform:2026-W47:80%"]
    assert len(slack.payloads) == 2


def test_dry_run_reports_without_claiming_or_sending(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url)
    spend(clickhouse, settings, 95, NOV_10 - timedelta(hours=1))
    alerts = BudgetAlerts(*clickhouse, settings)
    (outcome,) = alerts.check(NOV_10, dry_run=True)
    assert outcome.status == "would_send"
    assert outcome.message.blocks[0]["text"]["text"] == "Budget alert: team platform passed 80%"
    assert slack.payloads == [] and ledger_rows(clickhouse) == []
    assert [o.status for o in alerts.check(NOV_10)] == ["sent"]
    assert alerts.check(NOV_10, dry_run=True) == []



def test_without_a_webhook_the_alert_is_recorded_once_then_sent_when_one_is_set(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    configured = alert_settings(slack.url)
    team = configured.teams[0].model_copy(update={"slack_webhook": None,
                                                   "slack_webhook_env": "SLACK_WEBHOOK_PLATFORM"})
    missing = configured.model_copy(update={"teams": [team]})
    spend(clickhouse, missing, 85, NOV_10 - timedelta(hours=2))

    alerts = BudgetAlerts(*clickhouse, missing)
    (outcome,) = alerts.check(NOV_10)
    assert (outcome.status, outcome.error) == ("no_destination",
                                               "no webhook: $SLACK_WEBHOOK_PLATFORM is not set")
    (again,) = alerts.check(NOV_10 + timedelta(minutes=5))
    assert again.status == "no_destination"
    client, database = clickhouse
    assert client.query(f"SELECT alert_key, state, detail FROM {database}.budget_alerts"
                        ).result_rows == [("team:platform:2026-11:80%", "undelivered",
                                           "no webhook: $SLACK_WEBHOOK_PLATFORM is not set")]
    assert slack.payloads == []

    (sent,) = BudgetAlerts(*clickhouse, configured).check(NOV_10 + timedelta(minutes=10))
    assert sent.status == "sent" and len(slack.payloads) == 1
    assert [state for _, state in ledger_rows(clickhouse)] == ["undelivered", "claimed", "sent"]


def test_a_key_minted_in_the_registry_with_a_budget_is_alerted(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    """A key minted through the registry (not in the configuration) with --budget: its row in
    key_events gives the alert job the budget; a revoked key's budget is no longer watched."""
    client, database = clickhouse
    settings = alert_settings(slack.url)
    minted = KeySettings(id="key_0000000c0ffe", sha256="c" * 64, user="bob", team="platform",
                         budget_usd=Decimal(4))
    revoked = KeySettings(id="key_00000000dead", sha256="d" * 64, user="bob", team="platform",
                          budget_usd=Decimal(1), revoked_at=NOV_10 - timedelta(days=1))
    events = [KeyEvent(key_id=key.id, version=index + 1, action="minted", actor="cli:test",
                       state=key.model_dump(mode="json"))
              for index, key in enumerate((minted, revoked))]
    client.insert(f"{database}.key_events", [row_of(event) for event in events],
                  column_names=COLUMNS)
    spend(clickhouse, settings, 5, NOV_10 - timedelta(hours=1), user="bob",
          key_id="key_0000000c0ffe")
    spend(clickhouse, settings, 5, NOV_10 - timedelta(hours=1), user="bob",
          key_id="key_00000000dead")
    outcomes = BudgetAlerts(*clickhouse, settings).check(NOV_10)
    assert [o.ref.key for o in outcomes] == ["key:key_0000000c0ffe:2026-11:100%"]
    assert slack.headers_of(0) == "Budget reached: key key_0000000c0ffe (platform) at 125%"
