"""The replayer: watches the broker and replays the spool, in order, after any loss.

One thread, ``Replayer``, owns three jobs:

- *health*: every second it asks the broker for the envelopes topic. If the
  broker does not answer, the emitter goes spool-only. If the topic is missing
  (tansu came back empty) and ``create_topics`` is on, every Meterline topic
  is re-created; otherwise the emitter stays spool-only until an operator does.
- *rewind*: when the emitter has a rewind pending and the broker is healthy,
  the replay cursor goes back to the first unconfirmed envelope in the spool
  (on a fresh start, after waiting briefly for the confirmations reader to
  catch up, so envelopes the sink already stored are not replayed).
- *replay*: envelopes from the cursor on are read from the spool and produced,
  in seq order, keeping librdkafka's queue at most half full. When nothing
  outstanding is left after the cursor, the emitter returns to direct mode
  (``EnvelopeEmitter.finish_replay`` decides that under the emitter's lock,
  so an envelope appended meanwhile is either replayed or produced directly;
  at worst both, which downstream de-duplicates).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Literal

import orjson
from confluent_kafka import KafkaException

from meterline.kafka import BrokerError, KafkaClients, create_topics
from meterline.kafka.incarnation import topic_identity
from meterline.schemas import KafkaSettings, Topics

if TYPE_CHECKING:
    from .emitter import EnvelopeEmitter

log = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 1.0
HEALTH_TIMEOUT_S = 2.0
STARTUP_CATCH_UP_S = 5.0
BATCH = 500
BrokerState = Literal["ok", "missing", "unreachable"]


class Replayer:
    def __init__(self, emitter: EnvelopeEmitter, kafka: KafkaSettings, *, create_topics: bool,
                 confirmations_caught_up: threading.Event) -> None:
        self._emitter = emitter
        self._kafka = kafka
        self._topics = Topics(kafka.topic_prefix)
        self._create_topics = create_topics
        self._caught_up = confirmations_caught_up
        clients = KafkaClients(kafka, role="gateway")
        self._admin = clients.admin()
        self._watch_incarnations = clients.policy.watch_topic_incarnations
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-replay", daemon=True)
        self.replay_started_at = 0.0
        self.last_replay_rate = 0.0
        self._topic_id: str | None = None

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)

    def broker_state(self) -> BrokerState:
        try:
            # All topics, not just ours: tansu auto-creates a topic named in a metadata
            # request, with its own partition count rather than ``kafka.partitions``.
            metadata = self._admin.list_topics(timeout=HEALTH_TIMEOUT_S)
        except KafkaException:
            return "unreachable"
        topic = metadata.topics.get(self._topics.envelopes)
        if topic is None or topic.error is not None or not topic.partitions:
            return "missing"
        if not self._watch_incarnations:  # Apache Kafka does not re-create topics
            return "ok"
        topic_id = topic_identity(self._admin, self._topics.envelopes, HEALTH_TIMEOUT_S)
        if topic_id and self._topic_id and topic_id != self._topic_id:
            # Whatever the old incarnation held and the sink had not stored is gone.
            self._emitter.spool_only(f"{self._topics.envelopes} was re-created")
        self._topic_id = topic_id or self._topic_id
        return "ok"

    def _healthy(self) -> bool:
        state = self.broker_state()
        if state == "missing" and self._create_topics:
            try:
                create_topics(self._kafka, self._topics.all(), partitions=self._kafka.partitions,
                              replication_factor=self._kafka.replication_factor)
                log.warning("re-created the Meterline topics: the broker came back without them")
                state = self.broker_state()
            except BrokerError as exc:
                log.warning("could not re-create topics: %s", exc)
        if state != "ok":
            self._emitter.spool_only(f"broker {state} ({self._topics.envelopes})")
        return state == "ok"

    def _run(self) -> None:
        self._caught_up.wait(STARTUP_CATCH_UP_S)
        cursor = 0
        replaying = False
        replayed_at_start = 0
        while not self._stop.is_set():
            if not self._healthy():
                self._stop.wait(HEALTH_INTERVAL_S)
                continue
            reason = self._emitter.take_rewind()
            if reason:
                self._emitter.replace_producer()
                first = self._emitter.spool.first_outstanding()
                cursor = self._emitter.spool.next_seq if first is None else first
                replaying = True
                replayed_at_start = self._emitter.replayed
                self.replay_started_at = time.monotonic()
                log.warning("replaying the spool from seq %d (%d outstanding): %s", cursor,
                            self._emitter.spool.stats().depth, reason)
            if not replaying:
                self._stop.wait(HEALTH_INTERVAL_S)
                continue
            deadline = time.monotonic() + HEALTH_INTERVAL_S
            while time.monotonic() < deadline and not self._stop.is_set():
                before = cursor
                cursor = self._replay_batch(cursor)
                if cursor == before:
                    break
            if self._emitter.finish_replay(cursor):
                replaying = False
                count = self._emitter.replayed - replayed_at_start
                elapsed = max(time.monotonic() - self.replay_started_at, 1e-6)
                self.last_replay_rate = count / elapsed
                log.warning("replay done: %d envelopes in %.1fs (%.0f/s); producing directly",
                            count, elapsed, self.last_replay_rate)

    def _replay_batch(self, cursor: int) -> int:
        """Produce up to ``BATCH`` outstanding envelopes from ``cursor``; the new cursor."""
        spool = self._emitter.spool
        for seq in spool.outstanding_from(cursor, BATCH):
            while self._emitter.queued() > self._emitter.queue_limit // 2:
                if self._stop.wait(0.05):
                    return cursor
            record = spool.read(seq)
            if record is not None:
                request_id, payload = record
                try:
                    fields = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    log.error("spool record seq %d is not JSON; skipped", seq)
                    cursor = seq + 1
                    continue
                if not self._emitter.produce(
                        seq, str(fields.get("key_id", "")).encode(), payload,
                        str(fields.get("schema_version", "1.0")).encode(),
                        request_id=str(uuid.UUID(bytes=request_id)), replay=True):
                    return cursor
            cursor = seq + 1
        return cursor
