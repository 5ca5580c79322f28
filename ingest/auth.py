"""Virtual keys: minted, hashed, and looked up on every call.

A virtual key is ``ml-`` followed by 40 url-safe random characters. Only its
SHA-256 is stored (config file or keys file); its id, ``key_`` plus the first
12 hex digits of that hash, is what envelopes and logs carry.

``KeyRing.lookup`` is on the hot path: one hash and one dict lookup. On a miss
it re-reads the keys file if that file changed since the last read (at most
once a second), so a key minted by ``meterline keys create`` works at once
without restarting the gateway.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import yaml

from meterline.schemas import KeySettings

from .errors import Unauthenticated

KEY_PREFIX = "ml-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_for(key_sha256: str) -> str:
    return "key_" + key_sha256[:12]


def mint_key(keys_file: Path, *, user: str, team: str, repo: str = "", name: str = "",
             admin: bool = False) -> tuple[str, KeySettings]:
    """Create a key, append its hash to ``keys_file``, and return (key text, record).

    The key text is returned once and never stored anywhere.
    """
    key = KEY_PREFIX + secrets.token_urlsafe(30)
    digest = hash_key(key)
    record = KeySettings(id=key_id_for(digest), sha256=digest, user=user, team=team, repo=repo,
                         name=name, admin=admin,
                         created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    existing = yaml.safe_load(keys_file.read_text()) if keys_file.exists() else None
    entries = list((existing or {}).get("keys") or [])
    entries.append(record.model_dump(exclude_defaults=False))
    tmp = keys_file.with_suffix(".tmp")
    tmp.write_text(
        "# Virtual keys minted by `meterline keys create`: hashes only, safe to commit.\n"
        + yaml.safe_dump({"keys": entries}, sort_keys=False)
    )
    tmp.replace(keys_file)
    return key, record


class KeyRing:
    """Lookup from presented key text to its record."""

    def __init__(self, keys: Iterable[KeySettings], keys_file: str = "") -> None:
        self._static = list(keys)
        self._keys_file = Path(keys_file) if keys_file else None
        self._file_version = self._version()
        self._lock = threading.Lock()
        self._by_hash = {record.sha256: record for record in self._static}

    def _version(self) -> tuple[int, int, int]:
        """Which version of the keys file is on disk: (inode, mtime, size).

        ``mint_key`` replaces the file by rename, so every write has a new
        inode: two keys minted within one mtime tick are still two versions.
        """
        if self._keys_file is None:
            return (0, 0, 0)
        try:
            stat = self._keys_file.stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _reload_if_changed(self) -> None:
        """Re-read the keys file if it changed. Called only for a key not known yet: one
        ``stat`` (microseconds) per unknown key, a parse only when the file is new, so a
        key minted a moment ago works on its first call."""
        if self._keys_file is None:
            return
        with self._lock:
            version = self._version()
            if version == self._file_version:
                return
            data = yaml.safe_load(self._keys_file.read_text()) or {}
            from_file = [KeySettings.model_validate(item) for item in data.get("keys") or []]
            static_hashes = {record.sha256 for record in self._static}
            merged = {record.sha256: record for record in self._static}
            merged.update({r.sha256: r for r in from_file if r.sha256 not in static_hashes})
            self._by_hash = merged
            self._file_version = version

    def lookup(self, presented: str | None) -> KeySettings:
        """The record for ``presented``, or ``Unauthenticated`` with a helpful message."""
        if not presented:
            raise Unauthenticated(
                "Missing API key: send your Meterline virtual key as 'Authorization: Bearer <key>' "
                "or 'x-api-key: <key>'."
            )
        digest = hash_key(presented)
        record = self._by_hash.get(digest)
        if record is None:
            self._reload_if_changed()
            record = self._by_hash.get(digest)
        if record is None:
            raise Unauthenticated(
                "Incorrect API key provided. Use a virtual key issued by `meterline keys create`."
            )
        return record
