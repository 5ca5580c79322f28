"""The chargeback's savings: what routing rules saved, and what shadow rules would save.

Read from ``events FINAL`` (the latest version of each request), only the rows
a rule touched (docs/routing.md), aggregated in ClickHouse to one row per team,
rule and mode:

- an ``enforce`` rule's calls cost ``cost_usd``; without the rule they would
  have cost ``counterfactual_cost_usd`` (the requested model, same usage). The
  difference is what the rule saved;
- a ``shadow`` rule's calls cost ``cost_usd``; on the rule's target they would
  have cost ``shadow_cost_usd``. The difference is what it would save, before
  anyone turns it on.

The totals come from an independent read: the ledger's own pass over
``events FINAL`` (``chargeback_query.ledger_totals``, one sum over the month,
no grouping), which reconciles spend in the same scan. ``Savings.balanced``
says the rows add up to them to the 12th decimal, which the chargeback checks
as it checks spend.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterline.schemas import RuleMode
from meterline.sinks.errors import store_errors

from .chargeback_period import Window
from .chargeback_query import EVENTS_IN_WINDOW, LedgerTotals, bounds, exact

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class RuleSavings:
    """One team's calls under one rule in the month; unattributed teams share ``team == ""``."""

    attributed: bool
    team: str
    rule: str
    mode: RuleMode
    requests: int
    cost_usd: Decimal
    #: enforce: what the calls would have cost without the rule; shadow: with it.
    other_usd: Decimal

    @property
    def saved_usd(self) -> Decimal:
        """enforce: saved; shadow: would save (negative when the target is dearer)."""
        return (self.other_usd - self.cost_usd if self.mode == "enforce"
                else self.cost_usd - self.other_usd)


@dataclass(frozen=True, slots=True)
class Savings:
    """The month's rule rows, and the totals read independently of them."""

    rows: list[RuleSavings]
    total_saved_usd: Decimal
    total_would_save_usd: Decimal

    def _sum(self, mode: RuleMode, attributed: bool | None = None, team: str = "") -> Decimal:
        return sum((row.saved_usd for row in self.rows if row.mode == mode and (
            attributed is None or (row.attributed, row.team) == (attributed, team))), ZERO)

    @property
    def saved_usd(self) -> Decimal:
        return self._sum("enforce")

    @property
    def would_save_usd(self) -> Decimal:
        return self._sum("shadow")

    @property
    def balanced(self) -> bool:
        return (self.saved_usd == self.total_saved_usd
                and self.would_save_usd == self.total_would_save_usd)

    def team_saved_usd(self, attributed: bool, team: str) -> Decimal:
        return self._sum("enforce", attributed, team if attributed else "")

    def team_would_save_usd(self, attributed: bool, team: str) -> Decimal:
        return self._sum("shadow", attributed, team if attributed else "")

    def for_team(self, attributed: bool, team: str) -> list[RuleSavings]:
        key = (attributed, team if attributed else "")
        return [row for row in self.rows if (row.attributed, row.team) == key]


def fetch_savings(client: Any, database: str, window: Window, ledger: LedgerTotals) -> Savings:
    """The month's savings rows per team, rule and mode, against ``ledger``'s totals."""
    def select(mode: RuleMode, rule: str, other: str) -> str:
        return (f"SELECT attributed, if(attributed, team, '') AS bucket, '{mode}' AS mode, "
                f"{rule} AS rule, count(), sum(cost_usd), sum({other}) "
                f"FROM {database}.events FINAL WHERE {EVENTS_IN_WINDOW} AND {rule} != '' "
                "GROUP BY attributed, bucket, rule")
    sql = (select("enforce", "routing_rule", "counterfactual_cost_usd") + " UNION ALL "
           + select("shadow", "shadow_rule", "shadow_cost_usd"))
    with store_errors("reading the routing savings"):
        rows = client.query(sql, parameters=bounds(window)).result_rows
    found = [RuleSavings(bool(r[0]), r[1], r[3], r[2], int(r[4]), exact(r[5]), exact(r[6]))
             for r in rows]
    found.sort(key=lambda row: (not row.attributed, row.team, row.mode, row.rule))
    return Savings(found, ledger.saved_usd, ledger.would_save_usd)
