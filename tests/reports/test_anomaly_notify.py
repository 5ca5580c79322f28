"""Anomaly notifications: team and operator channels, dedup, cooldown, stale replays."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from meterline.reports.anomaly_notify import AnomalyNotifier, render
from meterline.schemas import Settings
from tests.reports.slack_stub import SlackStub, running_stub
from tests.sinks.test_anomalies import START, finding

pytestmark = pytest.mark.store


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    yield from running_stub()


def _settings(team_url: str, operator_url: str = "", cooldown_h: float = 6) -> Settings:
    return Settings(teams=[{"name": "platform", "slack_webhook": team_url}],
                    anomalies={"operator_slack_webhook": operator_url or None,
                               "cooldown_h": cooldown_h},
                    budgets={"retry_base_s": 0})


def _ledger(client: Any, database: str) -> list[tuple[str, str]]:
    rows = client.query(f"SELECT channel, state FROM {database}.anomaly_notifications "
                        "ORDER BY window_start, channel").result_rows
    return [(row[0], row[1]) for row in rows]


def test_each_finding_once_per_channel_with_cooldown(clickhouse: tuple[Any, str],
                                                     slack: SlackStub) -> None:
    client, database = clickhouse
    operator = SlackStub().up()
    try:
        notifier = AnomalyNotifier(client, database, _settings(slack.url, operator.url),
                                   now=lambda: START + timedelta(hours=1))
        first, same_entity_next_hour, later = finding(0), finding(1), finding(8)
        notifier.notify([first, same_entity_next_hour])
        notifier.notify([first, later])  # a replayed batch: nothing twice
        assert len(slack.payloads) == 2 and len(operator.payloads) == 2
        assert "request spike - key key_a" in slack.headers_of(0)
        assert _ledger(client, database) == [
            ("operator", "sent"), ("team", "sent"), ("operator", "suppressed"),
            ("team", "suppressed"), ("operator", "sent"), ("team", "sent")]
    finally:
        operator.down()


def test_replayed_month_is_stored_not_paged_and_failures_are_recorded(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    client, database = clickhouse
    notifier = AnomalyNotifier(client, database, _settings(slack.url),
                               now=lambda: START + timedelta(days=30))
    notifier.notify([finding(0)])
    assert slack.payloads == []
    assert _ledger(client, database) == [("operator", "no_destination"), ("team", "stale")]
    live = AnomalyNotifier(client, database, _settings(slack.url),
                           now=lambda: START + timedelta(hours=30))
    slack.fail_next(404)
    live.notify([finding(20)])
    assert ("team", "failed") in _ledger(client, database)


def test_message_names_observed_expected_and_window() -> None:
    from zoneinfo import ZoneInfo

    text, blocks = render(finding(0), ZoneInfo("Europe/Berlin"))
    assert text.startswith("CRITICAL: ")
    fields = " ".join(f["text"] for f in blocks[2]["fields"])
    assert "400 requests" in fields and "120 requests" in fields
    assert "Tue 15 Sep 05:00" in fields  # 03:00 UTC in Berlin
    assert isinstance(START, datetime)
