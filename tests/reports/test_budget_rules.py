"""Which budgets exist and which alerts their figures call for (pure, no store)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterline.reports.budget_rules import Spend, assess, budgets_from, threshold_name
from meterline.schemas import BudgetSettings, KeySettings, Settings, TeamSettings, UserSettings

NOW = datetime(2026, 11, 10, tzinfo=UTC)


def settings(**budgets: Any) -> Settings:
    return Settings(
        timezone="Europe/Berlin",
        teams=[TeamSettings(name="platform", budget_usd=Decimal(100)),
               TeamSettings(name="data", budget_usd=Decimal(40), budget_period="week",
                            budget_timezone="Asia/Tokyo",
                            alert_thresholds=[Decimal("0.5"), Decimal("0.9")]),
               TeamSettings(name="ops")],
        users=[UserSettings(name="alice", team="platform", budget_usd=Decimal(20)),
               UserSettings(name="bob", team="platform")],
        keys=[KeySettings(id="key_0123456789ab", sha256="0" * 64, user="bob", team="data",
                          budget_usd=Decimal(5))],
        budgets=BudgetSettings(**budgets))


def test_budgets_inherit_their_team_period_zone_and_thresholds() -> None:
    found = {(b.scope, b.subject): b for b in budgets_from(settings())}
    assert set(found) == {("team", "platform"), ("team", "data"), ("user", "alice"),
                          ("key", "key_0123456789ab")}
    assert (found["team", "platform"].period_kind, found["team", "platform"].timezone) == (
        "month", "Europe/Berlin")
    key = found["key", "key_0123456789ab"]
    assert (key.team.name, key.period_kind, key.timezone, key.thresholds) == (
        "data", "week", "Asia/Tokyo", (Decimal("0.5"), Decimal("0.9")))
    assert found["user", "alice"].describe() == "user alice (platform)"


def test_thresholds_due_most_severe_first() -> None:
    config = settings(forecast=False)
    budget = budgets_from(config)[0]
    period = budget.period(NOW)

    def due(usd: int) -> tuple[str, ...]:
        return assess(budget, period, Spend(Decimal(usd)), NOW, config.budgets).due

    assert due(0) == ()
    assert due(79) == ()
    assert due(80) == ("80%",)
    assert due(100) == ("100%", "80%")
    assert threshold_name(Decimal("0.825")) == "82.5%"


def test_forecast_uses_the_recent_rate_and_needs_enough_history() -> None:
    config = settings(forecast_min_elapsed_h=48)
    budget = budgets_from(config)[0]
    period = budget.period(NOW)
    # $10 in the last 100 h (0.1/h); Berlin's November has 503 h left: $50.30 more.
    steady = Spend(Decimal(60), Decimal(10), 100.0)
    result = assess(budget, period, steady, NOW, config.budgets)
    assert result.projected_usd == Decimal("110.3")
    assert result.due == ("forecast",)
    assert result.crosses_at == datetime(2026, 11, 26, 16, tzinfo=UTC)

    slow = assess(budget, period, Spend(Decimal(60), Decimal(5), 100.0), NOW, config.budgets)
    assert slow.due == () and slow.crosses_at is None

    early = datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert assess(budget, budget.period(early), steady, early, config.budgets).due == ()


def test_zero_budget_alerts_on_any_spend_only() -> None:
    config = settings(forecast=False)
    budget = replace(budgets_from(config)[0], budget_usd=Decimal(0))
    period = budget.period(NOW)
    assert assess(budget, period, Spend(), NOW, config.budgets).due == ()
    assert assess(budget, period, Spend(Decimal("0.01")), NOW, config.budgets).due == (
        "100%", "80%")
