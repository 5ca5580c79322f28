"""Who is looking: key login, the session cookie, and what a viewer may see.

Rules (docs/dashboard.md):

- the UI asks for a virtual key once, checks its SHA-256 against the same
  records the gateway uses (settings, the keys file and the key registry), and
  then forgets it;
- the cookie holds only the key **id** and an expiry, signed with HMAC-SHA256
  under a secret drawn when the process starts. It is ``HttpOnly`` and
  ``SameSite=Strict``. The key text is never stored, logged or rendered, and a
  restart simply asks everyone to log in again;
- every request resolves the id against the current keys (settings plus the
  keys file, re-read when it changes, and the registry), so a key removed from
  the file, revoked or expired loses the dashboard at once, not when its
  cookie expires;
- an admin key sees every team; any other key sees only its own team.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from meterline.governance.registry import KeyRegistry
from meterline.schemas import KeySettings

COOKIE_NAME = "meterline_ui"
SESSION_TTL_S = 12 * 3600


class Forbidden(Exception):
    """The viewer's key does not cover what was asked; rendered as the 403 page."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in key: its id and attribution, never its text."""

    key_id: str
    user: str
    team: str
    admin: bool

    def may_see(self, team: str) -> bool:
        return self.admin or team == self.team

    def require(self, team: str) -> None:
        if not self.may_see(team):
            raise Forbidden(f"The key {self.key_id} belongs to team '{self.team}' and may not see "
                            "another team's spend. Log in with an admin key or that team's key.")


class KeyDirectory:
    """Every known key record by id: the configured ones plus the keys file, re-read on change,
    overlaid with the key registry's states (its word on a key is the newest).

    ``KeyRing`` answers "which record has this key?" on the hot path and
    re-reads the keys file only on a miss; the dashboard also resolves ids on
    every request and lists every key (the key inventory), so it must see the
    file's current content, and reads it itself: whenever its mtime differs
    from the last read, including the first (a ``KeyRing`` built after a key
    was minted would otherwise treat the file as already read).
    """

    def __init__(self, configured: list[KeySettings], keys_file: str,
                 registry: KeyRegistry) -> None:
        self._configured = list(configured)
        self._keys_file = Path(keys_file) if keys_file else None
        self._registry = registry
        self._mtime_ns = -1
        self._records: dict[str, KeySettings] = {}

    def records(self) -> dict[str, KeySettings]:
        return {**self._from_files(), **{state.id: state for state in self._registry.states()}}

    def _from_files(self) -> dict[str, KeySettings]:
        mtime = (self._keys_file.stat().st_mtime_ns
                 if self._keys_file is not None and self._keys_file.exists() else 0)
        if mtime != self._mtime_ns:
            records = {record.id: record for record in self._configured}
            if mtime:
                assert self._keys_file is not None
                data = yaml.safe_load(self._keys_file.read_text()) or {}
                for item in data.get("keys") or []:
                    record = KeySettings.model_validate(item)
                    records.setdefault(record.id, record)
            self._records, self._mtime_ns = records, mtime
        return self._records



class SessionSigner:
    """Signs and checks ``<key id>.<expiry>.<mac>`` cookie values."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, key_id: str, now_s: float | None = None) -> str:
        payload = f"{key_id}.{int((now_s or time.time()) + SESSION_TTL_S)}"
        return f"{payload}.{self._mac(payload)}"

    def key_id(self, cookie: str | None, now_s: float | None = None) -> str | None:
        """The key id in a valid, unexpired cookie; None for anything else."""
        if not cookie or cookie.count(".") != 2:
            return None
        key_id, expiry, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(f"{key_id}.{expiry}")):
            return None
        if not expiry.isdigit() or int(expiry) < (now_s or time.time()):
            return None
        return key_id


def viewer_for(record: KeySettings) -> Viewer:
    return Viewer(key_id=record.id, user=record.user, team=record.team, admin=record.admin)
