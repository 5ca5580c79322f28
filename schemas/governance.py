"""Governance settings and the key registry's wire contract (docs/governance.md).

Settings (``meterline.yaml``)::

    governance:
      on_unavailable: open        # the ledger cannot be read: serve (log, alert) or refuse
      key_limits:  {rpm: 600, tpm: 2000000}   # defaults for every key; 0 or absent: none
      user_limits: {rpm: 0, tpm: 0}
      team_limits: {rpm: 0, tpm: 0}

A team, user or key entry may set its own ``rpm``/``tpm`` and ``budget_mode``
(``alert``, the default, or ``block``).

Key events travel on the ``keys`` topic (compacted, keyed by key id). Each
carries the key's whole state after the change, with a version that only
grows, so a reader keeps the highest version per key and needs nothing else:
applying an event twice, or an older one late, changes nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .kafka_settings import _Section

BudgetMode = Literal["alert", "block"]
FailMode = Literal["open", "closed"]
KeyAction = Literal["minted", "rotated", "revoked", "updated", "expired"]

KEY_EVENT_SCHEMA_VERSION = "1.0"

#: The gateway's refusals of a call it could attribute (an event's ``error_class``), and
#: how reports name them. Each such call is an event with status >= 400 and no cost.
REFUSALS: dict[str, str] = {
    "KeyRevoked": "key revoked",
    "KeyExpired": "key expired",
    "ModelNotAllowed": "model or provider not allowed",
    "RateLimited": "over a rate limit",
    "BudgetExceeded": "over a blocking budget",
    "PolicyRefused": "egress policy",
    "EnforcementUnavailable": "limits unavailable (fail-closed)",
}


class RateLimit(_Section):
    """Requests and tokens (input + output) per rolling minute; ``None`` or 0: no limit."""

    rpm: int | None = Field(None, ge=0)
    tpm: int | None = Field(None, ge=0)

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm)


class GovernanceSettings(_Section):
    """Rate limits and budget enforcement at the gateway, held in the store's ledger."""

    #: When the ledger (the store) cannot be asked: ``open`` serves the call, logs it and
    #: counts it in ``meterline_enforcement_unavailable_total``; ``closed`` refuses it (503).
    on_unavailable: FailMode = "open"
    #: How long a call waits for the ledger's answer before ``on_unavailable`` decides.
    ledger_timeout_s: float = Field(0.5, gt=0)
    #: A call that does not say how many tokens it may write reserves this many.
    default_max_output_tokens: int = Field(32_000, ge=1)
    #: A reservation whose call never settles (its gateway died) is dropped after this long;
    #: the call's envelope, replayed from the spool, is then counted from the ledger.
    reservation_ttl_s: float = Field(900.0, gt=0)
    #: How often the ledger re-reads the stored spend.
    refresh_interval_s: float = Field(1.0, gt=0)
    key_limits: RateLimit = RateLimit()
    user_limits: RateLimit = RateLimit()
    team_limits: RateLimit = RateLimit()
    #: A rotated key stays valid this long beside its successor, unless the rotation says.
    rotation_grace_h: float = Field(24.0, ge=0)


def key_version() -> int:
    """A version for a key event: microseconds since the epoch, so later changes win."""
    return time.time_ns() // 1000


class KeyEvent(BaseModel):
    """One change to a virtual key, and the key's whole state after it.

    ``state`` is a ``KeySettings`` dump (JSON mode): the hash, never the key.
    ``actor`` says who did it: ``cli:<user>@<host>``, ``key:<key id> (<user>)``
    for a change made through the HTTP API or the dashboard, ``system``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = KEY_EVENT_SCHEMA_VERSION
    key_id: str
    version: int
    action: KeyAction
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    actor: str
    reason: str = ""
    state: dict[str, object]
