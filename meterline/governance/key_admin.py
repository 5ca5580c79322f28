"""Changing keys: mint, rotate, revoke, and who may do it.

Each change is a ``KeyEvent`` with the key's whole new state, published to the
registry's compacted topic by ``KeyPublisher``; gateways apply it within a
poll (docs/governance.md), and the store writes it to ``key_events`` with who
did it. The key text exists only in what ``mint`` and ``rotate`` return: it is
shown once and never stored or published, only its SHA-256.

Who may change what (``Actor.may_manage``): a platform admin (an ``admin``
key, or the CLI run with the deployment's configuration) any team's keys; a
team admin (a ``team_admin`` key) only its own team's, and never to create an
admin key. Anyone else none.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from meterline.kafka import KafkaClients, create_registry_topic
from meterline.kafka.errors import BrokerUnavailable
from meterline.schemas import SCHEMA_VERSION_HEADER, KafkaSettings, KeySettings, Topics
from meterline.schemas.governance import (
    KEY_EVENT_SCHEMA_VERSION,
    KeyAction,
    KeyEvent,
    key_version,
)

from .registry import encode_event

log = logging.getLogger(__name__)

KEY_PREFIX = "ml-"


class NotPermitted(PermissionError):
    """The actor may not make this change; the message says why."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: ``name`` as recorded; ``team`` None for a platform admin."""

    name: str
    team: str | None

    @classmethod
    def cli(cls) -> Actor:
        """The operator running the CLI with the deployment's configuration."""
        return cls(f"cli:{getpass.getuser()}@{socket.gethostname()}", None)

    @classmethod
    def of_key(cls, key: KeySettings) -> Actor:
        """The holder of ``key``; raises ``NotPermitted`` unless it is an admin key."""
        name = f"key:{key.id} ({key.user})"
        if key.admin:
            return cls(name, None)
        if key.team_admin:
            return cls(name, key.team)
        raise NotPermitted("this key may not manage keys: it needs the team_admin or admin role")

    @property
    def platform(self) -> bool:
        return self.team is None

    def may_manage(self, team: str) -> bool:
        return self.team is None or self.team == team

    def check(self, team: str) -> None:
        if not self.may_manage(team):
            raise NotPermitted(f"a team admin of {self.team!r} may not manage keys of team "
                               f"{team!r}")


def new_key_text() -> str:
    """``ml-`` and 40 URL-safe random characters."""
    return KEY_PREFIX + secrets.token_urlsafe(30)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def event_for(action: KeyAction, state: KeySettings, actor: Actor, reason: str = "") -> KeyEvent:
    return KeyEvent(key_id=state.id, version=key_version(), action=action, actor=actor.name,
                    reason=reason, state=state.model_dump(mode="json"))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_for(key_sha256: str) -> str:
    """``key_`` and the first 12 hex digits of the hash: what envelopes and logs carry."""
    return "key_" + key_sha256[:12]


def new_record(key: str, **fields: Any) -> KeySettings:
    """The record of key text ``key``: its hash, id and ``fields``."""
    digest = hash_key(key)
    return KeySettings(id=key_id_for(digest), sha256=digest,
                       created_at=_now().isoformat(), **fields)


def mint(actor: Actor, **fields: Any) -> tuple[str, KeyEvent]:
    """A new key for ``fields`` (user, team, repo, name, limits...): (key text, event)."""
    actor.check(fields["team"])
    if fields.get("admin") and not actor.platform:
        raise NotPermitted("only a platform admin may create an admin key")
    key = new_key_text()
    return key, event_for("minted", new_record(key, **fields), actor)


def revoke(actor: Actor, record: KeySettings, reason: str = "") -> KeyEvent:
    actor.check(record.team)
    if record.revoked_at is not None:
        raise ValueError(f"{record.id} is already revoked ({record.revoked_at:%Y-%m-%d %H:%M})")
    return event_for("revoked", record.model_copy(update={"revoked_at": _now()}), actor, reason)


def rotate(actor: Actor, record: KeySettings, grace: timedelta) -> tuple[str, list[KeyEvent]]:
    """A successor for ``record`` with the same attributes; the old key stays valid for
    ``grace`` (both work until then), then expires. Returns (new key text, both events)."""
    actor.check(record.team)
    if record.revoked_at is not None:
        raise ValueError(f"{record.id} is revoked: mint a new key instead")
    key = new_key_text()
    kept = record.model_dump(exclude={"id", "sha256", "created_at", "expires_at", "rotated_to"})
    successor = new_record(key, **kept, expires_at=record.expires_at)
    until = _now() + grace
    old_expiry = min(until, record.expires_at) if record.expires_at else until
    old = record.model_copy(update={"expires_at": old_expiry, "rotated_to": successor.id})
    reason = f"rotated to {successor.id}; valid until {old_expiry.isoformat()}"
    return key, [event_for("minted", successor, actor, f"rotation of {record.id}"),
                 event_for("rotated", old, actor, reason)]


class KeyPublisher:
    """Publishes key events to the registry topic, synchronously (a change is durable on the
    broker, or it raises ``BrokerUnavailable``)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._topic = Topics(kafka.topic_prefix).keys
        self._producer = KafkaClients(kafka, role="keys").producer()
        self._ready = False

    def publish(self, events: Iterable[KeyEvent], timeout_s: float = 15.0) -> None:
        if not self._ready:
            create_registry_topic(self._kafka, timeout_s)
            self._ready = True
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        for event in events:
            self._producer.produce(
                self._topic, key=event.key_id.encode(), value=encode_event(event),
                headers=[(SCHEMA_VERSION_HEADER, KEY_EVENT_SCHEMA_VERSION.encode())],
                on_delivery=delivered)
        left = self._producer.flush(timeout_s)
        if left or failures:
            raise BrokerUnavailable(f"the key registry did not confirm the change "
                                    f"({left} unconfirmed; {'; '.join(failures) or 'timeout'})")
        log.info("published key events to %s", self._topic)
