"""Which budgets exist, and which of their alerts are due: pure functions, no I/O.

``budgets_from(settings)`` lists every budget the configuration declares: one
per team with ``budget_usd``, plus optional per-user and per-key budgets. A
user's or key's budget uses its team's period, zone, thresholds and webhook.

``assess(budget, period, spend, now)`` says how much of the budget is used, what
the projection says, and which alerts are due *by the figures alone*; the alert
ledger then decides which of them still need sending. Alert names are stable
ledger keys: ``80%``, ``100%`` (one per threshold) and ``forecast``.

Projection: spend so far plus the current rate times the hours left, where the
rate is the spend over a trailing window (a week by default, clipped to the
period). Over the first week that is the straight line through the period's
start; later it follows the recent pace, so a team that sped up (or slowed
down) mid-month is projected on what it does now. Coding traffic has a weekly
rhythm (quiet weekends), which a whole-week window averages out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from meterline.schemas import BudgetPeriodKind, BudgetSettings, KeySettings, Settings, TeamSettings

from .budget_period import BudgetPeriod

Scope = Literal["team", "user", "key"]
FORECAST = "forecast"


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit for one team, user or key, and the team that hears about it."""

    scope: Scope
    subject: str
    team: TeamSettings
    budget_usd: Decimal
    period_kind: BudgetPeriodKind
    timezone: str
    thresholds: tuple[Decimal, ...]

    def period(self, now: datetime) -> BudgetPeriod:
        return BudgetPeriod.containing(now, self.period_kind, self.timezone)

    def describe(self) -> str:
        """``team platform``, ``user alice (platform)``, ``key key_0123… (platform)``."""
        if self.scope == "team":
            return f"team {self.subject}"
        return f"{self.scope} {self.subject} ({self.team.name})"


@dataclass(frozen=True, slots=True)
class Spend:
    """What the rollup says for one budget's period so far."""

    period_usd: Decimal = Decimal(0)
    recent_usd: Decimal = Decimal(0)
    recent_h: float = 0.0
    unpriced_requests: int = 0


@dataclass(frozen=True, slots=True)
class Assessment:
    """A budget's state at ``now`` and the alerts its figures call for, most severe first."""

    budget: Budget
    period: BudgetPeriod
    now: datetime
    spend: Spend
    used: Decimal
    projected_usd: Decimal | None
    crosses_at: datetime | None
    due: tuple[str, ...]


def threshold_name(threshold: Decimal) -> str:
    """``Decimal("0.8")`` → ``80%``; the ledger key of a threshold alert."""
    return f"{(threshold * 100).normalize():f}%"


def budgets_from(settings: Settings, registry_keys: Iterable[KeySettings] = ()) -> list[Budget]:
    """Every budget in the configuration, teams first, in configuration order, then those of
    ``registry_keys`` (the key registry's, revoked ones left out) the configuration lacks."""
    defaults = settings.budgets
    teams = {team.name: team for team in settings.teams}
    budgets: list[Budget] = []

    def add(scope: Scope, subject: str, team: TeamSettings | None, usd: Decimal | None) -> None:
        if team is None or usd is None:
            return
        period_kind, timezone = settings.budget_calendar(team)
        budgets.append(Budget(
            scope=scope, subject=subject, team=team, budget_usd=usd,
            period_kind=period_kind, timezone=timezone,
            thresholds=tuple(team.alert_thresholds or defaults.thresholds)))

    for team in settings.teams:
        add("team", team.name, team, team.budget_usd)
    for user in settings.users:
        add("user", user.name, teams.get(user.team), user.budget_usd)
    for key in settings.keys:
        add("key", key.id, teams.get(key.team), key.budget_usd)
    configured = {key.id for key in settings.keys}
    for key in registry_keys:
        if key.id not in configured and key.revoked_at is None:
            add("key", key.id, teams.get(key.team), key.budget_usd)
    return budgets


def recent_window_start(period: BudgetPeriod, now: datetime, window_h: float) -> datetime:
    """Start of the projection's trailing window: a whole UTC hour, never before the period."""
    start = (now - timedelta(hours=window_h)).replace(minute=0, second=0, microsecond=0)
    return max(start, period.start)


def assess(budget: Budget, period: BudgetPeriod, spend: Spend, now: datetime,
           defaults: BudgetSettings) -> Assessment:
    """The budget's state at ``now``; ``due`` lists alerts the figures call for."""
    used = spend.period_usd / budget.budget_usd if budget.budget_usd > 0 else Decimal(0)
    due = [threshold_name(threshold) for threshold in sorted(budget.thresholds, reverse=True)
           if spend.period_usd > 0 and spend.period_usd >= threshold * budget.budget_usd]
    projected, crosses_at = _project(budget, period, spend, now)
    if (defaults.forecast and crosses_at is not None
            and period.elapsed_h(now) >= defaults.forecast_min_elapsed_h
            and threshold_name(max(budget.thresholds)) not in due):
        due.append(FORECAST)
    return Assessment(budget=budget, period=period, now=now, spend=spend, used=used,
                      projected_usd=projected, crosses_at=crosses_at, due=tuple(due))


def _project(budget: Budget, period: BudgetPeriod, spend: Spend,
             now: datetime) -> tuple[Decimal | None, datetime | None]:
    """(spend projected at period end, when the budget is reached) at the recent rate."""
    if spend.recent_h <= 0:
        return None, None
    rate_per_h = spend.recent_usd / Decimal(repr(spend.recent_h))
    remaining_h = period.duration_h - period.elapsed_h(now)
    projected = spend.period_usd + rate_per_h * Decimal(repr(remaining_h))
    left = budget.budget_usd - spend.period_usd
    if left <= 0 or rate_per_h <= 0:
        return projected, None
    crosses_at = now + timedelta(hours=float(left / rate_per_h))
    return projected, crosses_at if crosses_at < period.end else None
