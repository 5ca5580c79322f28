"""Period-to-date spend and its drivers, read from the ``spend_hourly`` rollup.

The rollup is duplicate-safe (the sink inserts each request id once) and its
hours are UTC, so a period is the half-open range of hours [start, upper) with
``upper`` the end of the hour containing ``now`` (or the period's end, if
sooner): a check never counts spend stamped after its own ``now``.
``SummingMergeTree`` rows are only summed on merges, so every read ``sum()``s.

Unpriced requests cost 0 in the rollup and are counted separately, so an alert
can say how much spend it cannot see.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from meterline.sinks.errors import store_errors

from .budget_period import BudgetPeriod
from .budget_rules import Scope, Spend

#: The rollup column that identifies each scope's subject.
SCOPE_COLUMN: dict[Scope, str] = {"team": "team", "user": "user", "key": "key_id"}
DRIVER_DIMENSIONS = ("user", "model", "repo")

__all__ = ["DRIVER_DIMENSIONS", "SCOPE_COLUMN", "Driver", "SpendWindow", "dig_in_sql",
           "read_drivers", "read_spend"]


@dataclass(frozen=True, slots=True)
class SpendWindow:
    """The hours a check reads for one period: [start, upper), trailing from ``recent_start``."""

    start: datetime
    upper: datetime
    recent_start: datetime
    now: datetime

    @classmethod
    def of(cls, period: BudgetPeriod, now: datetime, recent_start: datetime) -> SpendWindow:
        hour_end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return cls(period.start, min(period.end, hour_end), recent_start, now)

    @property
    def recent_h(self) -> float:
        return max(0.0, (self.now - self.recent_start).total_seconds() / 3600)


@dataclass(frozen=True, slots=True)
class Driver:
    """One of the largest contributors to a budget's spend along one dimension."""

    dimension: str
    name: str
    cost_usd: Decimal


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def read_spend(client: Any, database: str, window: SpendWindow,
               scopes: Iterable[Scope]) -> dict[tuple[Scope, str], Spend]:
    """Spend of every team, user and key (as asked) in ``window``; absent means none."""
    wanted = sorted(set(scopes))
    if not wanted:
        return {}
    with store_errors("reading period spend"):
        result = client.query(
            f"SELECT team, user, key_id, sum(cost_usd), "
            "sumIf(cost_usd, hour >= {recent:DateTime('UTC')}), sumIf(requests, unpriced) "
            f"FROM {database}.spend_hourly "
            "WHERE hour >= {start:DateTime('UTC')} AND hour < {upper:DateTime('UTC')} "
            f"GROUP BY team, user, key_id",
            parameters={"start": _ts(window.start), "upper": _ts(window.upper),
                        "recent": _ts(window.recent_start)})
    totals: dict[tuple[Scope, str], list[Any]] = {}
    for team, user, key_id, cost, recent, unpriced in result.result_rows:
        subjects: dict[Scope, str] = {"team": team, "user": user, "key": key_id}
        for scope in wanted:
            entry = totals.setdefault((scope, subjects[scope]), [Decimal(0), Decimal(0), 0])
            entry[0] += Decimal(cost)
            entry[1] += Decimal(recent)
            entry[2] += int(unpriced)
    return {subject: Spend(period_usd=cost, recent_usd=recent, recent_h=window.recent_h,
                           unpriced_requests=unpriced)
            for subject, (cost, recent, unpriced) in totals.items()}


def read_drivers(client: Any, database: str, window: SpendWindow, scope: Scope, subject: str,
                 limit: int = 3) -> list[Driver]:
    """The ``limit`` largest users, models and repos behind one budget's period spend."""
    column = SCOPE_COLUMN[scope]
    parts = [f"SELECT '{dimension}' AS dimension, toString({dimension}) AS name, "
             f"sum(cost_usd) AS usd FROM {database}.spend_hourly "
             f"WHERE {column} = {{subject:String}} AND hour >= {{start:DateTime('UTC')}} "
             "AND hour < {upper:DateTime('UTC')} GROUP BY name"
             for dimension in DRIVER_DIMENSIONS]
    with store_errors("reading spend drivers"):
        result = client.query(
            f"SELECT dimension, name, usd FROM ({' UNION ALL '.join(parts)}) "
            "WHERE usd > 0 ORDER BY dimension, usd DESC, name LIMIT {limit:UInt32} BY dimension",
            parameters={"subject": subject, "start": _ts(window.start),
                        "upper": _ts(window.upper), "limit": limit})
    drivers = [Driver(dimension, name, Decimal(usd)) for dimension, name, usd in result.result_rows]
    order = {dimension: index for index, dimension in enumerate(DRIVER_DIMENSIONS)}
    return sorted(drivers, key=lambda driver: (order[driver.dimension], -driver.cost_usd))


def dig_in_sql(scope: Scope, subject: str, window: SpendWindow) -> str:
    """A ``meterline sql`` command an operator can paste to see the spend in detail.

    The values are bound parameters (``--param``), quoted for a POSIX shell by
    ``shlex``: a team or user name can neither change the query nor the command.
    """
    sql = (f"SELECT user, model, repo, sum(cost_usd) AS usd FROM spend_hourly "
           f"WHERE {SCOPE_COLUMN[scope]} = {{subject:String}} AND hour >= {{start:String}} "
           "AND hour < {upper:String} GROUP BY user, model, repo ORDER BY usd DESC LIMIT 20")
    params = {"subject": subject, "start": _ts(window.start), "upper": _ts(window.upper)}
    return shlex.join(["meterline", "sql", *(f"--param={name}={value}"
                                             for name, value in params.items()), sql])
