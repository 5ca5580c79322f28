"""Reconciliation: do the rollups say what the distinct events say?

``reconcile`` reads, for an optional time range, the ledger's own figures —
rows in ``events``, distinct request ids, and Σ cost over the latest version
of each id (``events FINAL``) — and each rollup's Σ requests and Σ cost. The
books balance when every rollup's requests equal the distinct ids and its
cost equals the events' cost exactly (both are Decimal(38, 12) sums, so
"exactly" is meaningful; tests still allow 1e-9 as the issue states).

Read-only; safe to call at any time. While the sink or a re-pricing is
writing, a snapshot may be caught between the events part and the rollup
part of one insert; callers who need a settled answer take the writer's lock
(the ``reconcile`` store job does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from .errors import store_errors
from .rollups import ROLLUPS, time_param


@dataclass(frozen=True, slots=True)
class RollupTotals:
    requests: int
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The ledger's figures and each rollup's, for one range."""

    event_rows: int
    distinct_request_ids: int
    events_cost_usd: Decimal
    unpriced_requests: int
    rollups: dict[str, RollupTotals] = field(default_factory=dict)

    def balanced(self, tolerance_usd: Decimal = Decimal(0)) -> bool:
        return all(totals.requests == self.distinct_request_ids
                   and abs(totals.cost_usd - self.events_cost_usd) <= tolerance_usd
                   for totals in self.rollups.values())

    def as_dict(self) -> dict[str, Any]:
        return {"event_rows": self.event_rows, "distinct_request_ids": self.distinct_request_ids,
                "events_cost_usd": str(self.events_cost_usd),
                "unpriced_requests": self.unpriced_requests, "balanced": self.balanced(),
                "rollups": {name: {"requests": totals.requests, "cost_usd": str(totals.cost_usd)}
                            for name, totals in self.rollups.items()}}


def reconcile(client: Any, database: str, start: datetime | None = None,
              end: datetime | None = None) -> Reconciliation:
    """The figures for [start, end) of ``received_at`` (all time when omitted)."""
    events_where, bound = _range("received_at", start, end)
    with store_errors("reconciling events"):
        rows, distinct = client.query(
            f"SELECT count(), uniqExact(request_id) FROM {database}.events {events_where}",
            parameters=bound).result_rows[0]
        cost, unpriced = client.query(
            f"SELECT sum(cost_usd), countIf(unpriced) FROM {database}.events FINAL {events_where}",
            parameters=bound).result_rows[0]
        totals = {}
        for rollup in ROLLUPS:
            where, bound = _range(rollup.bucket[0], start, end)
            requests, rollup_cost = client.query(
                f"SELECT sum(requests), sum(cost_usd) FROM {database}.{rollup.table} {where}",
                parameters=bound).result_rows[0]
            totals[rollup.table] = RollupTotals(int(requests), Decimal(rollup_cost))
    return Reconciliation(int(rows), int(distinct), Decimal(cost), int(unpriced), totals)


def _range(column: str, start: datetime | None, end: datetime | None
           ) -> tuple[str, dict[str, str]]:
    """The WHERE of [start, end) on ``column`` (either end open) and its bound values."""
    clauses, bound = [], {}
    if start is not None:
        clauses.append(f"{column} >= {{start:DateTime64(6, 'UTC')}}")
        bound["start"] = time_param(start)
    if end is not None:
        clauses.append(f"{column} < {{end:DateTime64(6, 'UTC')}}")
        bound["end"] = time_param(end)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", bound
