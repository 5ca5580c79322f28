"""Budget alerts on a simulated organisation's traffic: the figures agree with the events.

Ten days of a Berlin organisation's traffic go through the real enrichment and
sink into ClickHouse. Budgets are then set so that one team is at 90%, one
past 100% and one far below. The check must alert exactly the first two, with
spend figures equal, to the cent, to an independent sum over the stored
events of the Berlin-local month so far. Unattributed traffic, from the
contractor key whose team is not configured, must not alert anyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from meterline.reports import BudgetAlerts
from meterline.reports.alerts_message import usd
from meterline.schemas import BudgetSettings, Settings
from meterline.simulator.organisation import Organisation
from tests.reports.slack_stub import SlackStub, running_stub
from tests.traffic import load_events

pytestmark = pytest.mark.store

MONTH_START_BERLIN = datetime(2026, 10, 31, 23, tzinfo=UTC)  # 1 Nov 00:00 CET
NOW = datetime(2026, 11, 10, 23, tzinfo=UTC)  # 11 Nov 00:00 CET


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    yield from running_stub()


def test_simulated_month_alerts_the_right_teams_with_reconciled_figures(
        clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    client, database = clickhouse
    org = Organisation.demo(seed=11)
    base = Settings(**org.settings_overrides())
    events = load_events(client, database, base,
                         org.envelopes(datetime(2026, 10, 30, tzinfo=UTC), NOW))
    spent = {team.name: sum((e.cost_usd for e in events
                             if e.team == team.name and e.received_at >= MONTH_START_BERLIN),
                            Decimal(0))
             for team in org.teams}
    at_90, past_100, low = (team.name for team in org.teams)
    budgets = {at_90: spent[at_90] / Decimal("0.9"), past_100: spent[past_100] / Decimal("1.2"),
               low: spent[low] * 10}
    overrides = org.settings_overrides()
    for team in overrides["teams"]:
        team["budget_usd"] = budgets[team["name"]].quantize(Decimal("0.01"))
        team["slack_webhook"] = SecretStr(slack.url)
    settings = Settings(**overrides, budgets=BudgetSettings(retry_base_s=0.01,
                                                            claim_settle_s=0.05))

    outcomes = BudgetAlerts(client, database, settings).check(NOW)
    assert sorted((o.ref.subject, o.ref.alert, o.superseded) for o in outcomes) == sorted([
        (at_90, "80%", ("forecast",)), (past_100, "100%", ("80%",))])
    assert len(slack.payloads) == 2
    for payload in slack.payloads:
        fields = dict(f["text"].split("\n", 1) for f in payload["blocks"][1]["fields"])
        team = fields["*Team*"]
        budget = Decimal(team_budget(overrides, team))
        assert fields["*Spend vs budget*"] == f"{usd(spent[team])} of {usd(budget)}"
        assert fields["*Period*"] == "November 2026 (Europe/Berlin)"
    assert BudgetAlerts(client, database, settings).check(NOW) == []


def team_budget(overrides: dict[str, Any], name: str) -> str:
    return str(next(team["budget_usd"] for team in overrides["teams"] if team["name"] == name))
