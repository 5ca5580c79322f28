"""The agent's output: events and dead letters to Kafka, durable per batch.

``BatchEmitter`` wraps a confluent-kafka (librdkafka) producer. The agent
calls ``event`` / ``dead_letter`` for each message of a batch (they only
queue: ~1 µs each, versus tens of µs for faust's ``Topic.send`` with its
per-message futures), then awaits ``durable()`` before the batch is
acknowledged to faust.

Guarantee of ``durable()``: on return every message queued so far is stored
by the broker with ``acks=all``; if any could not be delivered it raises
``EmitFailed`` and the agent crashes without committing, so the batch is
processed again after restart (at least once; the sink counts each request id
once). It runs the blocking ``flush`` in a thread so the event loop keeps
heart-beating the consumer group meanwhile.

Events are keyed by request id, and librdkafka's ``murmur2_random``
partitioner is the Java client's (and aiokafka's), so every producer of the
events topic maps one request id to one partition.

Idempotent on Apache Kafka, not on the embedded broker (``meterline.kafka``'s
policy): an idempotent producer keeps a producer id and sequence numbers, and
a broker that restarted empty (tansu keeps topics in memory) refuses them
with ``UnknownProducerId`` until ``durable()`` times out, so the worker
crashed on every broker restart (tests/e2e/test_durability.py). What
idempotence prevents, a duplicate after a retried send, every consumer
already absorbs: the sink stores each request id once, anomaly ids are
deterministic.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from confluent_kafka import KafkaError

from meterline.kafka import KafkaClients
from meterline.schemas import (
    ANOMALY_SCHEMA_VERSION,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SOURCE_HEADER,
    EVENT_SCHEMA_VERSION,
    SCHEMA_VERSION_HEADER,
    KafkaSettings,
    Topics,
)

from .errors import ProcessorError

log = logging.getLogger(__name__)

_EVENT_HEADERS: list[tuple[str, str | bytes | None]] = [
    (SCHEMA_VERSION_HEADER, EVENT_SCHEMA_VERSION.encode())]
ANOMALY_HEADERS: list[tuple[str, str | bytes | None]] = [
    (SCHEMA_VERSION_HEADER, ANOMALY_SCHEMA_VERSION.encode())]
FLUSH_TIMEOUT_S = 60.0


class EmitFailed(ProcessorError):
    """The broker did not take every message of a batch: crash, commit nothing."""


class BatchEmitter:
    """Queues events and dead letters; ``durable()`` waits until the broker has them all."""

    def __init__(self, kafka: KafkaSettings, *, role: str) -> None:
        topics = Topics(kafka.topic_prefix)
        self._events = topics.events
        self._dead_letters = topics.dead_letters
        self._anomalies = topics.anomalies
        self._errors: list[str] = []
        self._producer = KafkaClients(kafka, role=role).producer(  # idempotence: see above
            **{"linger.ms": 5, "batch.num.messages": 10_000, "batch.size": 1 << 20,
               "queue.buffering.max.messages": 500_000, "partitioner": "murmur2_random",
               # a Python callback for the failed messages only, not one per message
               "delivery.report.only.error": True, "on_delivery": self._on_delivery})

    def event(self, request_id: bytes, value: bytes) -> None:
        self._produce(self._events, request_id, value, _EVENT_HEADERS)

    def anomaly(self, anomaly_id: bytes, value: bytes) -> None:
        self._produce(self._anomalies, anomaly_id, value, ANOMALY_HEADERS)

    def dead_letter(self, key: bytes | None, value: bytes | None, reason: str,
                    source: str) -> None:
        self._produce(self._dead_letters, key, value,
                      [(DEAD_LETTER_REASON_HEADER, reason.encode()),
                       (DEAD_LETTER_SOURCE_HEADER, source.encode())])

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, str | bytes | None]] | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:  # local queue full: let deliveries drain it
                self._producer.poll(0.05)

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error}")

    async def durable(self) -> None:
        """``flush_durable`` in a thread, so a faust app's event loop keeps heart-beating."""
        await asyncio.get_running_loop().run_in_executor(None, self.flush_durable)

    def flush_durable(self) -> None:
        """Return once every queued message is acknowledged; ``EmitFailed`` otherwise."""
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise EmitFailed(f"{remaining} messages undelivered after {FLUSH_TIMEOUT_S}s; "
                             f"{len(errors)} failed: {'; '.join(errors[:3])}")

    def close(self) -> None:
        self._producer.flush(10)
