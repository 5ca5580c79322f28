"""Traffic that never passed through the gateway: a developer's personal vendor key.

The seed's failure mode 5: developers route around a monitored gateway with
personal or direct vendor keys. ``plant_direct_key`` takes one developer's
calls to a reporting provider over a stretch of days out of the gateway's
traffic and makes them direct calls, made with that developer's own key. The
provider serves and bills them, so they appear in its usage and cost reports,
but no envelope exists for them: the reconcile job must find them as
*unmetered* spend under a key the gateway does not hold.

``served_call`` is the record the simulated provider is told about a call it
served (``POST /sim/served``), for volume runs that put envelopes straight on
the topic instead of sending calls.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from meterline.schemas import Envelope

from .organisation import Organisation

#: The providers whose reports the reconcile job reads.
REPORTING_PROVIDERS = ("openai", "anthropic")


@dataclass(frozen=True, slots=True)
class DirectStretch:
    """Who called the provider directly, with which key (in which workspace), and when."""

    developer: str
    provider: str
    key: str
    workspace: str
    start: datetime
    end: datetime
    calls: int


def personal_key(provider: str, developer: str, seed: int) -> str:
    """A vendor-shaped key the developer holds outside the gateway."""
    tail = hashlib.sha256(f"{seed}:{provider}:{developer}".encode()).hexdigest()[:32]
    return f"sk-ant-api03-{tail}" if provider == "anthropic" else f"sk-proj-{tail}"


def plant_direct_key(org: Organisation, envelopes: list[Envelope], start: datetime,
                     end: datetime, *, days: float = 3.0
                     ) -> tuple[list[Envelope], list[Envelope], DirectStretch | None]:
    """(gateway envelopes, direct calls, the stretch): ``days`` from a third of the range.

    The developer is the organisation's heaviest caller of Anthropic (the one
    a personal key would save most friction for). None when the range has no
    such calls.
    """
    stretch_start = start + (end - start) / 3
    stretch_end = min(end, stretch_start + timedelta(days=days))
    counts: dict[str, int] = {}
    for envelope in envelopes:
        if envelope.provider == "anthropic" and envelope.team in {t.name for t in org.teams}:
            counts[envelope.user] = counts.get(envelope.user, 0) + 1
    if not counts:
        return envelopes, [], None
    developer = max(sorted(counts), key=lambda name: counts[name])
    gateway, direct = [], []
    for envelope in envelopes:
        if (envelope.user == developer and envelope.provider == "anthropic"
                and stretch_start <= envelope.received_at < stretch_end):
            direct.append(envelope)
        else:
            gateway.append(envelope)
    stretch = DirectStretch(developer, "anthropic", personal_key("anthropic", developer, org.seed),
                            personal_workspace(developer), stretch_start, stretch_end,
                            len(direct))
    return gateway, direct, stretch


def personal_workspace(developer: str) -> str:
    """The workspace a developer's own key lives in: not the gateway's."""
    return f"wrkspc_personal_{developer}"


def served_call(envelope: Envelope, api_key: str, scope: str = "") -> dict[str, Any] | None:
    """What the provider served for ``envelope`` (None when it served and billed nothing)."""
    if envelope.provider not in REPORTING_PROVIDERS or not 200 <= envelope.status < 300:
        return None
    if envelope.surface in ("anthropic.count_tokens", "openai.models") or (
            envelope.usage.source == "missing"):
        return None
    usage = envelope.usage
    return {"at": envelope.received_at.isoformat(), "provider": envelope.provider,
            "api_key": api_key, "model": envelope.served_model, "surface": envelope.surface,
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_5m_tokens": usage.cache_write_5m_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "service_tier": usage.service_tier,
            **({"scope": scope} if scope else {})}
