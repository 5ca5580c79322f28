"""The key sink: key registry events → ClickHouse ``key_events``, and expiries as they pass.

``KeyEventSink`` follows the registry's compacted topic from the start on
every store start (it is small, and the table dedupes on ``(key_id,
version)``), applies each event to its own ``KeyRegistry`` and inserts the
events read in each poll. Once a minute it writes an ``expired`` row (actor
``system``, version = the state's + 1, so re-writing it is harmless) for every
key whose ``expires_at`` has passed: the audit trail says when a key stopped
working even though nobody acted.

Gateways read every key's newest state from the table at start-up
(``governance.registry.LATEST_STATES_SQL``), so a gateway started after the
embedded broker forgot the topic still knows every minted, rotated and
revoked key.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import orjson

from meterline.governance.registry import LATEST_STATES_SQL, KeyEventFollower, KeyRegistry
from meterline.schemas import KeySettings, Settings
from meterline.schemas.governance import KeyEvent

from .errors import SinkError, store_errors

log = logging.getLogger(__name__)

COLUMNS = ("key_id", "version", "at", "action", "actor", "reason", "team", "user", "name",
           "state")
EXPIRY_CHECK_S = 5.0


def row_of(event: KeyEvent) -> list[Any]:
    state = event.state
    return [event.key_id, event.version, event.at, event.action, event.actor, event.reason,
            state.get("team", ""), state.get("user", ""), state.get("name", ""),
            orjson.dumps(state).decode()]


class KeyEventSink(KeyEventFollower):
    """Writes every key event it reads, and the expiries it sees pass."""

    def __init__(self, settings: Settings, client: Any) -> None:
        super().__init__(settings.kafka, KeyRegistry(), role="store")
        self._client = client
        self._table = f"{settings.clickhouse.database}.key_events"
        self._batch: list[KeyEvent] = []
        self._expired: set[str] = set()
        self._next_expiry_check = 0.0

    def apply(self, message: Any) -> None:
        event = self.decode(message)
        if event is not None:
            self.registry.apply_event(event)
            self._batch.append(event)

    def tick(self, now: float) -> None:
        if now >= self._next_expiry_check:
            self._batch.extend(self._expiries(datetime.now(UTC)))
            self._next_expiry_check = now + EXPIRY_CHECK_S
        if self._batch:
            self._insert(self._batch)
            self._batch = []

    def _expiries(self, now: datetime) -> list[KeyEvent]:
        found = []
        for key in self.registry.states():
            if (key.expires_at is not None and key.expires_at <= now and key.revoked_at is None
                    and key.id not in self._expired):
                self._expired.add(key.id)
                found.append(KeyEvent(key_id=key.id, version=self.registry.version_of(key.id) + 1,
                                      action="expired", at=key.expires_at, actor="system",
                                      reason="rotation grace ended" if key.rotated_to
                                      else "expiry passed",
                                      state=key.model_dump(mode="json")))
        return found

    def _insert(self, events: list[KeyEvent]) -> None:
        """Insert, retrying while ClickHouse refuses: the follower does not move on meanwhile."""
        delay = 0.5
        while True:
            try:
                with store_errors("writing key events"):
                    self._client.insert(self._table, [row_of(e) for e in events],
                                        column_names=COLUMNS)
                return
            except SinkError as exc:
                log.warning("key events insert failed (%s); retrying in %.1f s", exc, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 10.0)


def registry_states(client: Any, database: str) -> list[KeySettings]:
    """Every key's newest state in ``key_events`` (the store side of ``LATEST_STATES_SQL``)."""
    with store_errors("reading key states"):
        result = client.query(LATEST_STATES_SQL.replace("{db}", database + "."))
    return [KeySettings.model_validate_json(state) for _, _, state in result.result_rows]


def run_key_sink(settings: Settings, client: Any, stop: threading.Event) -> None:
    """Follow the registry into ``key_events`` until ``stop``."""
    sink = KeyEventSink(settings, client)
    sink.start()
    try:
        while not stop.wait(1.0):
            if not sink.alive:
                raise RuntimeError("the key sink's follower thread died (see its traceback)")
    finally:
        sink.close()
