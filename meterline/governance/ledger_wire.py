"""The ledger's wire format: what a gateway sends the store, and what it answers.

``POST /ledger/admit`` (store endpoint, read or operator credential)::

    {"request_id": "...", "provider": "anthropic", "model": "claude-sonnet-4-5",
     "input_tokens": 1200, "max_output_tokens": 4096,
     "limits":  [{"scope": "key", "subject": "key_0123456789ab", "rpm": 60, "tpm": null}],
     "budgets": [{"scope": "team", "subject": "platform", "usd": "1.00",
                  "period": "month", "timezone": "UTC"}]}

answers ``{"admitted": true, "reserved_usd": "0.06"}`` or ``{"admitted": false,
"reason": "rate_limit" | "budget", "scope", "subject", "message",
"retry_after_s", "tokens"}``.

``POST /ledger/settle`` ``{"request_id", "provider", "model", "usage": {...}}``, the
usage the gateway read, answers ``{}``. Money travels as decimal strings, never floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import orjson

from meterline.schemas import BudgetPeriodKind, Usage

#: As ``reports.budget_rules.Scope`` (not imported: this module is the gateway's, kept light).
Scope = Literal["team", "user", "key"]
Refusal = Literal["rate_limit", "budget"]

ADMIT_PATH = "/ledger/admit"
SETTLE_PATH = "/ledger/settle"


@dataclass(frozen=True, slots=True)
class LimitAsk:
    """A per-minute limit that applies to a call."""

    scope: Scope
    subject: str
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class BudgetAsk:
    """A blocking budget that applies to a call."""

    scope: Scope
    subject: str
    usd: Decimal
    period: BudgetPeriodKind
    timezone: str


@dataclass(frozen=True, slots=True)
class Admission:
    """A call to admit: what it may cost at most, and what limits and budgets it falls under."""

    request_id: str
    provider: str
    model: str
    input_tokens: int
    max_output_tokens: int
    limits: tuple[LimitAsk, ...] = ()
    budgets: tuple[BudgetAsk, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    reason: Refusal | None = None
    scope: str = ""
    subject: str = ""
    message: str = ""
    retry_after_s: int = 0
    tokens: bool = False
    reserved_usd: Decimal = Decimal(0)


def encode_admission(ask: Admission) -> bytes:
    return orjson.dumps({
        "request_id": ask.request_id, "provider": ask.provider, "model": ask.model,
        "input_tokens": ask.input_tokens, "max_output_tokens": ask.max_output_tokens,
        "limits": [{"scope": lim.scope, "subject": lim.subject, "rpm": lim.rpm, "tpm": lim.tpm}
                   for lim in ask.limits],
        "budgets": [{"scope": b.scope, "subject": b.subject, "usd": str(b.usd),
                     "period": b.period, "timezone": b.timezone} for b in ask.budgets]})


def decode_admission(body: bytes) -> Admission:
    data = orjson.loads(body)
    return Admission(
        request_id=str(data["request_id"]), provider=str(data["provider"]),
        model=str(data["model"]), input_tokens=int(data["input_tokens"]),
        max_output_tokens=int(data["max_output_tokens"]),
        limits=tuple(LimitAsk(item["scope"], str(item["subject"]), item.get("rpm"),
                              item.get("tpm")) for item in data.get("limits") or ()),
        budgets=tuple(BudgetAsk(item["scope"], str(item["subject"]), Decimal(item["usd"]),
                                item["period"], item["timezone"])
                      for item in data.get("budgets") or ()))


def encode_decision(decision: Decision) -> bytes:
    if decision.admitted:
        return orjson.dumps({"admitted": True, "reserved_usd": str(decision.reserved_usd)})
    return orjson.dumps({"admitted": False, "reason": decision.reason, "scope": decision.scope,
                         "subject": decision.subject, "message": decision.message,
                         "retry_after_s": decision.retry_after_s, "tokens": decision.tokens})


def decode_decision(body: bytes) -> Decision:
    data = orjson.loads(body)
    if data.get("admitted"):
        return Decision(True, reserved_usd=Decimal(data.get("reserved_usd", "0")))
    return Decision(False, data["reason"], data.get("scope", ""), data.get("subject", ""),
                    data.get("message", ""), int(data.get("retry_after_s", 0)),
                    bool(data.get("tokens")))


def encode_settlement(request_id: str, provider: str, model: str, usage: Usage) -> bytes:
    return orjson.dumps({"request_id": request_id, "provider": provider, "model": model,
                         "usage": usage.model_dump()})
