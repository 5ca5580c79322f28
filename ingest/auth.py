"""Virtual keys: minted, hashed, and looked up on every call.

A virtual key is ``ml-`` followed by 40 url-safe random characters. Only its
SHA-256 is stored (config file, keys file, key registry); its id, ``key_``
plus the first 12 hex digits of that hash, is what envelopes and logs carry.

Keys come from three sources: ``keys:`` in ``meterline.yaml``, the bootstrap
keys file (``mint_key``, ``meterline keys create --file``), and the key
registry (``meterline.governance``), which every gateway follows and which
alone can revoke, rotate or expire a key. The registry's state of a key wins
over the files' (it is the newer word on it).

``KeyRing.lookup`` is on the hot path: one hash and two dict lookups. On a
miss it re-reads the keys file if that file changed since the last read, so a
key written there works at once; the proxy then also waits for the registry
to catch up (``KeyRing.lookup_waiting``) before refusing a key minted a
moment ago. ``KeyRing.check`` refuses a revoked or expired key, and one used for a
provider or model it is not allowed.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from meterline.governance.key_admin import (
    KEY_PREFIX,
    hash_key,
    key_id_for,
    new_key_text,
    new_record,
)
from meterline.governance.registry import KeyRegistry
from meterline.schemas import KeySettings

from .errors import KeyExpired, KeyRevoked, ModelNotAllowed, Unauthenticated

__all__ = ["KEY_PREFIX", "KeyRing", "RegistryNews", "UnknownKey", "check_allowed", "check_usable", "hash_key",
           "key_id_for", "mint_key"]


class UnknownKey(Unauthenticated):
    """A key was presented that no source knows (yet)."""


#: Waits (up to the seconds given) until the key registry has applied what was published
#: before the call; False when it could not tell (``TopicFollower.news``).
RegistryNews = Callable[[float], Awaitable[bool]]


def mint_key(keys_file: Path, **fields: Any) -> tuple[str, KeySettings]:
    """Create a key with ``fields`` (user, team, repo, name, admin, limits...), append its hash
    to the bootstrap ``keys_file``, and return (key text, record).

    The key text is returned once and never stored anywhere.
    """
    key = new_key_text()
    record = new_record(key, **fields)
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    existing = yaml.safe_load(keys_file.read_text()) if keys_file.exists() else None
    entries = list((existing or {}).get("keys") or [])
    entries.append(record.model_dump(mode="json", exclude_defaults=True))
    tmp = keys_file.with_suffix(".tmp")
    tmp.write_text(
        "# Virtual keys minted by `meterline keys create`: hashes only, safe to commit.\n"
        + yaml.safe_dump({"keys": entries}, sort_keys=False)
    )
    tmp.replace(keys_file)
    return key, record


class KeyRing:
    """Lookup from presented key text to its record."""

    def __init__(self, keys: Iterable[KeySettings], keys_file: str = "",
                 registry: KeyRegistry | None = None, news: RegistryNews | None = None) -> None:
        self.registry = registry or KeyRegistry()
        self._news = news
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
        record = self.registry.by_hash(digest) or self._by_hash.get(digest)
        if record is None:
            self._reload_if_changed()
            record = self.registry.by_hash(digest) or self._by_hash.get(digest)
        if record is None:
            raise UnknownKey(
                "Incorrect API key provided. Use a virtual key issued by `meterline keys create`."
            )
        return record

    async def lookup_waiting(self, presented: str | None) -> KeySettings:
        """``lookup``; a key no source knows is looked up again once the registry has caught
        up (up to a second), so a key minted a moment ago, on any host, works at once."""
        try:
            return self.lookup(presented)
        except UnknownKey:
            if self._news is None or not await self._news(1.0):
                raise
        return self.lookup(presented)

    def get(self, key_id: str) -> KeySettings | None:
        """The record of key ``key_id`` from any source, the registry's first."""
        found = self.registry.get(key_id)
        return found or next((r for r in self._by_hash.values() if r.id == key_id), None)

    def known(self) -> list[KeySettings]:
        """Every key known, once each (the registry's state where it has one)."""
        merged = {record.id: record for record in self._by_hash.values()}
        merged.update({record.id: record for record in self.registry.states()})
        return list(merged.values())


def check_usable(key: KeySettings, now: datetime) -> None:
    """Refuse a revoked key, or one past its expiry (a rotated key past its grace)."""
    if key.revoked_at is not None:  # at once, whatever this host's clock says
        raise KeyRevoked(f"This API key ({key.id}) was revoked on "
                         f"{key.revoked_at:%Y-%m-%d %H:%M} UTC. Ask your team admin for a new "
                         "key (`meterline keys create`).")
    if key.expires_at is not None and key.expires_at <= now:
        successor = f" Use its successor {key.rotated_to}." if key.rotated_to else ""
        raise KeyExpired(f"This API key ({key.id}) expired on "
                         f"{key.expires_at:%Y-%m-%d %H:%M} UTC.{successor}")


def check_allowed(key: KeySettings, provider: str, model: str) -> None:
    """Refuse a provider or model outside the key's allowed lists (empty lists allow all)."""
    if key.allowed_providers and provider not in key.allowed_providers:
        raise ModelNotAllowed(f"This API key may not call provider {provider!r}; it may call "
                              f"{', '.join(key.allowed_providers)}.", param="model")
    if key.allowed_models and not any(fnmatchcase(model, pattern)
                                      for pattern in key.allowed_models):
        raise ModelNotAllowed(f"This API key may not call model {model!r}; it may call "
                              f"{', '.join(key.allowed_models)}.", param="model")
