"""The anomaly: something surprising the detectors saw in the priced events.

An anomaly is a finding, not a measurement: *what* kind, *about whom* (team,
entity kind, entity), *how far off* (observed against expected and the
threshold that was crossed), *how bad* (severity), and *when* — the event-time
window the evidence covers (``window_start``/``window_end``) kept apart from
``detected_at``, the event time of the call that tipped it over. Both are
event times, never the wall clock, so replaying a past month reproduces the
same anomalies.

Identity: ``anomaly_id`` is derived from (kind, team, entity kind, entity,
window start) only, so a replay, a restarted worker or a second detection of
the same finding yields the same id, and every consumer (the ClickHouse sink,
the Slack notifier) dedupes on it. One row of the ClickHouse ``anomalies``
table per id.

Compatibility follows the envelope's rule: ``schema_version`` is
``MAJOR.MINOR``; minor versions only add optional fields.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ANOMALY_SCHEMA_VERSION = "1.2"

AnomalyKind = Literal[
    "spend_spike",       # spend per hour (user, key, team) or per day (team) far above its baseline
    "request_spike",     # requests per hour far above the entity's baseline (runaway agents)
    "spend_ceiling",     # a key's or user's spend in a UTC hour above its absolute ceiling
    "request_ceiling",   # a key's or user's requests in a UTC hour above its absolute ceiling
    "budget_share",      # one user holds more than a share of the team's month-to-date spend
    "dormant_key",       # a key active again after a long silence
    "new_model",         # a model the team has not used before (after its learning period)
    "new_tool",          # a tool the team has not used before (after its learning period)
    "unpriced_model",    # calls with tokens but no price: spend the reports cannot count
    "error_burst",       # a provider's error rate in a short window far above normal
    "policy_breach",     # a call broke an egress rule (audit mode: it still left)
    "sensitive_data",    # secrets or personal data found in a prompt sent to a provider
]
#: Findings against a configured absolute ceiling: no baseline, so nothing is "expected".
CEILING_KINDS: frozenset[AnomalyKind] = frozenset({"spend_ceiling", "request_ceiling"})
EntityKind = Literal["user", "key", "team", "model", "tool", "provider", "repo"]
Severity = Literal["info", "warning", "critical"]


def anomaly_id(kind: str, team: str, entity_kind: str, entity: str,
               window_start: datetime) -> str:
    """The deterministic id of one finding: same inputs, same id, in every process."""
    text = "|".join((kind, team, entity_kind, entity, window_start.isoformat()))
    return "an_" + hashlib.sha256(text.encode()).hexdigest()[:24]


class Anomaly(BaseModel):
    """One finding. ``observed``/``expected``/``threshold`` share the unit in ``unit``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = ANOMALY_SCHEMA_VERSION
    anomaly_id: str
    kind: AnomalyKind
    severity: Severity
    team: str
    entity_kind: EntityKind
    entity: str
    #: ``usd``, ``requests``, ``share`` (0..1), ``error_rate`` (0..1), ``days`` or ``calls``.
    unit: str
    observed: float
    expected: float
    threshold: float
    window_start: datetime
    window_end: datetime
    #: Event time of the call that made the finding (not the wall clock).
    detected_at: datetime
    #: A one-line human summary, as Slack shows it.
    summary: str
    #: Supporting facts (baseline samples, top contributors, the user of a key...).
    evidence: dict[str, str | float | int] = Field(default_factory=dict)

    @classmethod
    def build(cls, *, kind: AnomalyKind, severity: Severity, team: str, entity_kind: EntityKind,
              entity: str, unit: str, observed: float, expected: float, threshold: float,
              window_start: datetime, window_end: datetime, detected_at: datetime,
              summary: str, evidence: dict[str, str | float | int] | None = None) -> Anomaly:
        """An anomaly with its id derived from the identifying fields."""
        return cls(anomaly_id=anomaly_id(kind, team, entity_kind, entity, window_start),
                   kind=kind, severity=severity, team=team, entity_kind=entity_kind,
                   entity=entity, unit=unit, observed=observed, expected=expected,
                   threshold=threshold, window_start=window_start, window_end=window_end,
                   detected_at=detected_at, summary=summary, evidence=evidence or {})
