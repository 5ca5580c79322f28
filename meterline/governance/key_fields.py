"""What a key change is made of, parsed and checked the same way by every front end.

The CLI (``cli.keys``), the HTTP API and the dashboard (``ingest.key_service``)
all read durations, moments, amounts and model lists with these functions, and
say a key's status with ``status_of``, so the three agree on each. The parsers
raise ``argparse.ArgumentTypeError`` (a ``ValueError`` is not reported by
argparse with its own message), which callers outside argparse catch as such.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from meterline.schemas import KeySettings, Settings

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``30d``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30d, 24h or 15m")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def moment_or_duration(text: str) -> datetime:
    """An ISO time (``2027-01-31T00:00Z``) or a duration from now (``30d``)."""
    try:
        return datetime.now(UTC) + duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a time (2027-01-31T00:00Z) nor "
                                         "a duration (30d)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD") from exc
    if value < 0:
        raise argparse.ArgumentTypeError("a budget cannot be negative")
    return value


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def status_of(key: KeySettings, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if key.rotated_to:
        return f"rotating (valid until {key.expires_at:%Y-%m-%d %H:%M})"
    return "active"


def unknown_team(settings: Settings, team: str) -> str | None:
    known = {t.name for t in settings.teams}
    if known and team not in known:
        return f"unknown team {team!r}; configured teams: {', '.join(sorted(known))}"
    return None
