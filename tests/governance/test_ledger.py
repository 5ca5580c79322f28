"""The enforcement ledger on real ClickHouse: windows, reservations, settlement, refresh.

Spend is stored through the real stages (``tests.reports.budget_traffic.spend``: model
``meter-1`` costs exactly $1 per input token). The ledger's clock is a variable, so the
rolling minute moves without sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from meterline.governance.ledger import Ledger
from meterline.governance.ledger_wire import Admission, BudgetAsk, LimitAsk
from meterline.schemas import ClickHouseSettings, Usage
from tests.reports.budget_traffic import PRICED_MODEL, alert_settings, spend

pytestmark = pytest.mark.store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ledger_on(clickhouse: tuple[Any, str], clock: Clock) -> Ledger:
    client, database = clickhouse
    settings = alert_settings("http://127.0.0.1:9/unused")
    settings = settings.model_copy(update={"clickhouse": ClickHouseSettings(database=database)})
    return Ledger(settings, client, clock=clock)


def ask(request_id: str, *, limits: tuple[LimitAsk, ...] = (),
        budgets: tuple[BudgetAsk, ...] = (), input_tokens: int = 1,
        max_output: int = 0) -> Admission:
    return Admission(request_id, "openai", PRICED_MODEL, input_tokens, max_output, limits,
                     budgets)


TEAM_BUDGET = BudgetAsk("team", "platform", Decimal(10), "month", "UTC")


def test_rpm_refuses_past_the_limit_and_says_when_to_retry(clickhouse: tuple[Any, str]) -> None:
    clock = Clock()
    ledger = ledger_on(clickhouse, clock)
    limit = (LimitAsk("key", "key_a", rpm=2),)
    assert ledger.admit(ask("r1", limits=limit)).admitted
    clock.now += 20
    assert ledger.admit(ask("r2", limits=limit)).admitted
    refused = ledger.admit(ask("r3", limits=limit))
    assert (refused.admitted, refused.reason, refused.retry_after_s) == (False, "rate_limit", 40)
    assert "2 requests per minute" in refused.message
    clock.now += 40.5  # r1 has left the window
    assert ledger.admit(ask("r4", limits=limit)).admitted
    other = (LimitAsk("key", "key_b", rpm=2),)
    assert ledger.admit(ask("r5", limits=other)).admitted  # windows are per subject


def test_tpm_counts_settled_tokens(clickhouse: tuple[Any, str]) -> None:
    clock = Clock()
    ledger = ledger_on(clickhouse, clock)
    limit = (LimitAsk("user", "alice", tpm=1000),)
    assert ledger.admit(ask("r1", limits=limit, input_tokens=100)).admitted
    ledger.settle("r1", "openai", PRICED_MODEL,
                  Usage(input_tokens=600, output_tokens=500, source="provider"))
    clock.now += 10
    refused = ledger.admit(ask("r2", limits=limit))
    assert (refused.reason, refused.tokens, refused.retry_after_s) == ("rate_limit", True, 50)


def test_a_budget_counts_stored_spend_plus_reservations(clickhouse: tuple[Any, str]) -> None:
    clock = Clock()
    ledger = ledger_on(clickhouse, clock)
    settings = alert_settings("http://127.0.0.1:9/unused")
    spend(clickhouse, settings, 6, datetime.now(UTC))
    ledger.admit(ask("warm-up", budgets=(TEAM_BUDGET,), input_tokens=0))  # the budget is known
    ledger.refresh()
    period = datetime.now(UTC).strftime("%Y-%m")
    assert ledger.spent("team", "platform", period) == Decimal(6)
    first = ledger.admit(ask("r1", budgets=(TEAM_BUDGET,), input_tokens=3))  # worst case $3
    assert first.admitted and first.reserved_usd == Decimal(3)
    assert ledger.admit(ask("r2", budgets=(TEAM_BUDGET,), input_tokens=3)).admitted  # 9 < 10
    refused = ledger.admit(ask("r3", budgets=(TEAM_BUDGET,), input_tokens=3))  # 12 >= 10
    assert (refused.admitted, refused.reason) == (False, "budget")
    assert "$12.00 of its $10.00" in refused.message
    ledger.settle("r1", "openai", PRICED_MODEL, Usage(input_tokens=1, source="provider"))
    ledger.settle("r2", "openai", PRICED_MODEL, Usage(input_tokens=1, source="provider"))
    assert ledger.spent("team", "platform", period) == Decimal(8)  # 6 stored + 1 + 1 settled
    assert ledger.admit(ask("r4", budgets=(TEAM_BUDGET,), input_tokens=1)).admitted


def test_refresh_drops_a_reservation_once_its_event_is_stored(
        clickhouse: tuple[Any, str]) -> None:
    clock = Clock()
    ledger = ledger_on(clickhouse, clock)
    settings = alert_settings("http://127.0.0.1:9/unused")
    period = datetime.now(UTC).strftime("%Y-%m")
    event = spend(clickhouse, settings, 2, datetime.now(UTC))  # stored before the admit...
    ledger.admit(Admission(event.request_id, "openai", PRICED_MODEL, 5, 0, (), (TEAM_BUDGET,)))
    ledger.refresh()  # ...so the refresh finds it: counted once, at its stored cost
    assert ledger.spent("team", "platform", period) == Decimal(2)
    ledger.admit(ask("not-stored", budgets=(TEAM_BUDGET,), input_tokens=4))
    ledger.refresh()
    assert ledger.spent("team", "platform", period) == Decimal(6)  # 2 stored + 4 reserved
    clock.now += 10_000  # past reservation_ttl_s: its gateway died and nothing was stored
    ledger.refresh()
    assert ledger.spent("team", "platform", period) == Decimal(2)
