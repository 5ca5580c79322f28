"""A month of traffic for the chargeback tests: the simulated organisation plus edge cases.

The demo organisation brings priced, unpriced (``acme-coder-34b``) and
unattributed (``contractors``) traffic. Added here: a team and a user with
non-ASCII names, a configured team with no spend at all, and calls one
second either side of the month's local boundaries.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from meterline.schemas import Envelope, Settings, Usage
from meterline.simulator.organisation import Organisation

ZONE = "Europe/Berlin"
TZ = ZoneInfo(ZONE)
MONTH = "2026-10"
MONTH_START = datetime(2026, 10, 1, tzinfo=TZ)
MONTH_END = datetime(2026, 11, 1, tzinfo=TZ)
ZURICH = "Zürich-Daten"
JOSE = "José Ñúñez"
QUIET = "quiet-team"


def settings_for(org: Organisation, **extra: Any) -> Settings:
    overrides = org.settings_overrides()
    overrides["teams"] = [*overrides["teams"],
                          {"name": ZURICH, "cost_centre": "CC-9900", "lead": "josé@example.com"},
                          {"name": QUIET, "cost_centre": "CC-0001", "lead": "quiet@example.com"}]
    overrides["users"] = [*overrides["users"], {"name": JOSE, "team": ZURICH}]
    return Settings(**{**overrides, **extra})


def call(at: datetime, *, team: str = ZURICH, user: str = JOSE, model: str = "claude-sonnet-4-5",
         provider: str = "anthropic", input_tokens: int = 12_000,
         output_tokens: int = 800) -> Envelope:
    """One successful call at ``at`` (any zone), priced by the real price book."""
    request_id = str(uuid.UUID(int=(int(at.timestamp() * 1000) << 80) | (0x7 << 76) | (0b10 << 62)
                                | uuid.uuid4().int & ((1 << 62) - 1)))
    return Envelope(request_id=request_id, received_at=at, done_at=at + timedelta(seconds=2),
                    surface="anthropic.messages" if provider == "anthropic" else "openai.chat",
                    provider=provider, requested_model=model, served_model=model,
                    key_id="key_00000000beef", user=user, team=team, repo="acme/zürich-etl",
                    repo_source="header", tool="claude-code", status=200, outcome="ok",
                    usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                                source="provider"))


def edge_calls() -> list[Envelope]:
    """Non-ASCII team and user, boundary seconds, and last month's spend for the change."""
    second = timedelta(seconds=1)
    inside = [MONTH_START, MONTH_END - second, datetime(2026, 10, 14, 10, tzinfo=TZ),
              datetime(2026, 10, 25, 2, 30, tzinfo=TZ)]  # the night the clocks go back
    outside = [MONTH_START - second, MONTH_END, datetime(2026, 9, 15, 11, tzinfo=TZ)]
    return [call(at) for at in inside + outside]


def month_envelopes(org: Organisation, volume: float = 0.2) -> list[Envelope]:
    """The organisation's last week of September and all of October, plus the edge calls."""
    traffic = list(org.envelopes(datetime(2026, 9, 24, tzinfo=TZ), MONTH_END, volume=volume))
    return traffic + edge_calls()
