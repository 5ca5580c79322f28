"""The key registry as each reader holds it: every key's latest state, in memory.

Key events (``schemas.governance.KeyEvent``) carry a key's whole state and a
version; ``KeyRegistry.apply`` keeps the highest version per key id, so the
order events arrive in, and duplicates, do not matter. Readers: every gateway
(``KeyEventFollower``, from the start of the compacted ``keys`` topic, plus
the store's ``key_events`` table at start-up, so a gateway started after the
embedded broker forgot the topic still knows every key) and the store's key
sink.

Lookups are a dict read (safe from any thread: entries are replaced whole,
never mutated); ``apply`` runs on the follower's thread.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from meterline.kafka import BrokerError, create_registry_topic
from meterline.kafka.follower import TopicFollower
from meterline.schemas import SCHEMA_VERSION_HEADER, KafkaSettings, KeySettings, Topics
from meterline.schemas.governance import KEY_EVENT_SCHEMA_VERSION, KeyEvent

log = logging.getLogger(__name__)


#: Every key's newest state in the store's ``key_events`` (``{db}``: the database, or none
#: when asked through the store endpoint, whose session has the database selected).
LATEST_STATES_SQL = ("SELECT key_id, max(version) AS latest_version, "
                     "argMax(state, version) AS latest_state FROM {db}key_events GROUP BY key_id")


class KeyRegistry:
    """Keys by hash and by id; the highest version of each key wins."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[int, KeySettings]] = {}
        self._by_hash: dict[str, KeySettings] = {}

    def apply(self, state: KeySettings, version: int) -> bool:
        """Take ``state`` if it is newer than what is held for its key; True if taken."""
        held = self._by_id.get(state.id)
        if held is not None and held[0] >= version:
            return False
        self._by_id[state.id] = (version, state)
        self._by_hash[state.sha256] = state
        return True

    def apply_event(self, event: KeyEvent) -> bool:
        try:
            state = KeySettings.model_validate(event.state)
        except ValueError as exc:  # pydantic's ValidationError is one
            log.warning("skipping key event for %s: unreadable state (%s)", event.key_id, exc)
            return False
        return self.apply(state, event.version)

    def by_hash(self, digest: str) -> KeySettings | None:
        return self._by_hash.get(digest)

    def get(self, key_id: str) -> KeySettings | None:
        held = self._by_id.get(key_id)
        return held[1] if held else None

    def version_of(self, key_id: str) -> int:
        held = self._by_id.get(key_id)
        return held[0] if held else 0

    def states(self) -> list[KeySettings]:
        return [state for _, state in list(self._by_id.values())]


def encode_event(event: KeyEvent) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def decode_event(value: bytes) -> KeyEvent:
    return KeyEvent.model_validate_json(value)


class KeyEventFollower(TopicFollower):
    """Applies every event of the ``keys`` topic to a ``KeyRegistry``, from the start."""

    #: Short polls: a revocation or a key minted a moment ago is seen within this.
    poll_timeout_s = 0.2

    def __init__(self, kafka: KafkaSettings, registry: KeyRegistry, *, role: str) -> None:
        super().__init__(kafka, Topics(kafka.topic_prefix).keys, from_beginning=True, role=role,
                         name="key-registry", consumer_config={"fetch.wait.max.ms": 100})
        self.registry = registry
        self._kafka = kafka

    def prepare(self) -> None:
        """Create the topic if this deployment has none yet (the first gateway of a deployment
        made before the registry); without the right to, wait for ``init`` to."""
        try:
            create_registry_topic(self._kafka, timeout_s=5.0)
        except BrokerError as exc:  # no broker yet, or no CreateTopics right: keep following
            log.info("key registry topic not created here (%s); following it once it exists",
                     exc)

    def decode(self, message: Any) -> KeyEvent | None:
        """The message's event, or None (logged) for one this build cannot read."""
        headers = dict(message.headers() or [])
        version = headers.get(SCHEMA_VERSION_HEADER, b"").decode(errors="replace")
        if version.partition(".")[0] != KEY_EVENT_SCHEMA_VERSION.partition(".")[0]:
            log.warning("skipping key event at offset %d: schema_version %r", message.offset(),
                        version)
            return None
        try:
            return decode_event(message.value() or b"")
        except ValueError as exc:  # pydantic's ValidationError is one
            log.warning("skipping unreadable key event at offset %d: %s", message.offset(), exc)
            return None

    def apply(self, message: Any) -> None:
        event = self.decode(message)
        if event is not None:
            self.registry.apply_event(event)
