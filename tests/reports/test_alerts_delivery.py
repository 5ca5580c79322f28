"""Budget alerts when Slack misbehaves, and when a checker dies mid-send.

Slack is a real HTTP server on loopback answering 500, 429 or nothing at all;
ClickHouse is real. Each alert must still arrive exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterline.reports import BudgetAlerts
from meterline.reports.alerts_ledger import AlertLedger, AlertRef, Claim
from tests.reports.budget_traffic import alert_settings, ledger_rows, spend
from tests.reports.slack_stub import SlackStub, running_stub

pytestmark = pytest.mark.store

NOW = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
REF = AlertRef("team", "platform", "platform", "2026-11", "80%")


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    yield from running_stub()


def test_500s_and_429_are_retried_and_the_alert_is_sent_once(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url)
    spend(clickhouse, settings, 85, NOW - timedelta(hours=1))
    slack.fail_next(500, times=2)
    slack.fail_next(429, retry_after="0")
    (outcome,) = BudgetAlerts(*clickhouse, settings).check(NOW)
    assert (outcome.status, outcome.attempts) == ("sent", 4)
    assert slack.requests == [500, 500, 429, 200]
    assert len(slack.payloads) == 1
    assert BudgetAlerts(*clickhouse, settings).check(NOW) == []
    assert len(slack.payloads) == 1


def test_slack_down_through_every_retry_is_sent_by_a_later_check(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url, retry_attempts=3)
    spend(clickhouse, settings, 85, NOW - timedelta(hours=1))
    alerts = BudgetAlerts(*clickhouse, settings)

    slack.fail_next(503, times=3)
    (failed,) = alerts.check(NOW)
    assert failed.status == "failed" and "gave up after 3 attempts" in failed.error
    assert slack.payloads == []

    slack.down()
    (unreachable,) = alerts.check(NOW + timedelta(minutes=5))
    assert unreachable.status == "failed" and "Slack unreachable" in unreachable.error

    slack.up()
    (sent,) = alerts.check(NOW + timedelta(minutes=10))
    assert sent.status == "sent"
    assert alerts.check(NOW + timedelta(minutes=15)) == []
    assert len(slack.payloads) == 1
    assert [state for _, state in ledger_rows(clickhouse)] == [
        "claimed", "failed", "claimed", "failed", "claimed", "sent"]


def test_a_rejected_payload_is_not_retried_in_a_loop(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url)
    spend(clickhouse, settings, 85, NOW - timedelta(hours=1))
    slack.fail_next(404)
    (outcome,) = BudgetAlerts(*clickhouse, settings).check(NOW)
    assert outcome.status == "failed" and "not retried" in outcome.error
    assert slack.requests == [404]
    assert slack.url not in outcome.error


def test_a_checker_that_died_after_claiming_is_taken_over_after_the_timeout(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    settings = alert_settings(slack.url, retry_attempts=1, send_timeout_s=1.0,
                              claim_timeout_s=1.5)
    spend(clickhouse, settings, 85, NOW - timedelta(hours=1))
    dead = AlertLedger(*clickhouse, settle_s=0, timeout_s=1.5)
    assert dead.claim(REF, Decimal(85), Decimal(100)) is not None  # then it "crashed"

    alerts = BudgetAlerts(*clickhouse, settings)
    (in_flight,) = alerts.check(NOW)
    assert in_flight.status == "in_flight"
    assert slack.payloads == []
    time.sleep(1.6)
    (sent,) = alerts.check(NOW)
    assert sent.status == "sent"
    assert len(slack.payloads) == 1


def race_claims(ledgers: list[AlertLedger], ref: AlertRef) -> list[Claim]:
    """Every ledger claims ``ref`` at the same moment, each from its own thread."""
    barrier = threading.Barrier(len(ledgers))
    won: list[Claim] = []

    def race(ledger: AlertLedger) -> None:
        barrier.wait()
        claim = ledger.claim(ref, Decimal(85), Decimal(100))
        if claim is not None:
            won.append(claim)

    threads = [threading.Thread(target=race, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return won


def test_racing_claimants_without_the_process_lock_elect_one_sender(
        clickhouse: tuple[Any, str]) -> None:
    """The ledger protocol alone, as between processes sharing a ClickHouse server."""
    for round_ in range(3):
        ref = AlertRef("team", "platform", "platform", f"2026-W{round_:02d}", "80%")
        ledgers = [AlertLedger(*clickhouse, settle_s=0.3, timeout_s=60) for _ in range(4)]
        won = race_claims(ledgers, ref)
        assert len(won) == 1, f"round {round_}: {len(won)} winners"
        ledgers[0].record_sent(won[0])
        assert ledgers[0].status([ref.key])[ref.key].done
        assert race_claims(ledgers, ref) == []
