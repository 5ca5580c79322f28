"""What the detectors read of one priced event, in event time.

``Observation.from_row`` takes the event as the enrich agent wrote it (the
JSON row of the ``events`` table, decoded) and keeps the few fields the
detectors use. Spend is a float here: detectors compare magnitudes against
robust baselines, where a binary float's rounding is far below any threshold;
the exact decimal stays the ledger's (``events.cost_usd``).

Between the routing agent and the detectors an observation travels in its
own compact form (``to_wire``/``from_wire``: a JSON array, time as epoch
seconds), a tenth of the event row, so the detectors parse little.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

#: Statuses that count as a provider error: rate limits and server-side failures.
_ERROR_STATUSES = frozenset({429})


def _time(value: Any) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Observation:
    """One call, reduced to what anomaly detection needs. ``at`` is its arrival time (UTC)."""

    request_id: str
    at: datetime
    team: str
    user: str
    key_id: str
    provider: str
    model: str
    tool: str
    cost_usd: float
    unpriced: bool
    provider_error: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Observation:
        """From an ``events`` row (as decoded JSON); ``KeyError``/``ValueError`` if malformed."""
        status = int(row["status"])
        outcome = str(row.get("outcome", "ok"))
        return cls(
            request_id=str(row["request_id"]), at=_time(row["received_at"]),
            team=str(row["team"]), user=str(row["user"]), key_id=str(row["key_id"]),
            provider=str(row["provider"]), model=str(row["served_model"] or row["requested_model"]),
            tool=str(row.get("tool", "unknown")), cost_usd=float(row["cost_usd"]),
            unpriced=bool(row.get("unpriced", False)),
            provider_error=status >= 500 or status in _ERROR_STATUSES
            or outcome == "upstream_timeout")

    def to_wire(self) -> bytes:
        return orjson.dumps([self.request_id, self.at.timestamp(), self.team, self.user,
                             self.key_id, self.provider, self.model, self.tool, self.cost_usd,
                             self.unpriced, self.provider_error])

    @classmethod
    def from_wire(cls, value: bytes) -> Observation:
        """From ``to_wire`` bytes; ``ValueError``/``TypeError`` if they are not that."""
        (request_id, at_s, team, user, key_id, provider, model, tool, cost_usd, unpriced,
         provider_error) = orjson.loads(value)
        return cls(request_id=str(request_id), at=datetime.fromtimestamp(float(at_s), tz=UTC),
                   team=str(team), user=str(user), key_id=str(key_id), provider=str(provider),
                   model=str(model), tool=str(tool), cost_usd=float(cost_usd),
                   unpriced=bool(unpriced), provider_error=bool(provider_error))
