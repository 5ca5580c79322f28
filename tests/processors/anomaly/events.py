"""Hand-built observations for the detector tests."""

from __future__ import annotations

from datetime import datetime

from meterline.processors.anomaly import Observation


def obs(at: datetime, *, team: str = "platform", user: str = "alice", key: str = "key_a",
        provider: str = "anthropic", model: str = "claude-sonnet-4-5", tool: str = "claude-code",
        cost: float = 0.5, unpriced: bool = False, error: bool = False,
        request_id: str = "r") -> Observation:
    return Observation(request_id=request_id, at=at, team=team, user=user, key_id=key,
                       provider=provider, model=model, tool=tool, cost_usd=cost,
                       unpriced=unpriced, provider_error=error)
