"""Re-keying events for the detectors: one librdkafka producer, durable per batch.

``Rekeyer.to_team``/``to_provider`` queue a message onto the team-keyed or
the provider-keyed internal topic (about a microsecond each, against tens for
faust's ``Topic.send``: the anomaly path must not slow the enrich agent that
shares the worker's event loop); ``durable()`` returns once the broker holds
everything queued, and raises ``EmitFailed`` otherwise, so the routing agent
crashes without committing and the batch is routed again (at least once).

Any partitioner that maps a key to one partition keeps a team's events, and
so its table partition and changelog partition, together; this one is
librdkafka's ``murmur2_random``, the Java client's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError, Producer

from meterline.schemas import DEAD_LETTER_REASON_HEADER, DEAD_LETTER_SOURCE_HEADER, KafkaSettings

from ..emit import EmitFailed

FLUSH_TIMEOUT_S = 60.0


class Rekeyer:
    """Queues events onto the by-team and by-provider topics, and dead letters."""

    def __init__(self, kafka: KafkaSettings, *, by_team: str, by_provider: str,
                 dead_letters: str) -> None:
        self._by_team = by_team
        self._by_provider = by_provider
        self._dead_letters = dead_letters
        self._producer = Producer({
            # not idempotent: see processors/emit.py (a retried duplicate is one call
            # counted twice by a detector, as after a crash)
            **kafka.as_librdkafka(), "acks": "all", "enable.idempotence": False,
            "compression.type": "lz4", "linger.ms": 5, "batch.size": 1 << 20,
            "queue.buffering.max.messages": 500_000, "partitioner": "murmur2_random",
            "log_level": 3})
        self._errors: list[str] = []

    def to_team(self, team: str, value: bytes) -> None:
        self._produce(self._by_team, team.encode(), value, None)

    def to_provider(self, provider: str, value: bytes) -> None:
        self._produce(self._by_provider, provider.encode(), value, None)

    def dead_letter(self, key: bytes | None, value: bytes | None, reason: str,
                    source: str) -> None:
        self._produce(self._dead_letters, key, value,
                      [(DEAD_LETTER_REASON_HEADER, reason.encode()),
                       (DEAD_LETTER_SOURCE_HEADER, source.encode())])

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, str | bytes | None]] | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers,
                                       on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain it
                self._producer.poll(0.05)

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error}")

    async def durable(self) -> None:
        """Return once every queued message is acknowledged; ``EmitFailed`` otherwise."""
        remaining = await asyncio.get_running_loop().run_in_executor(
            None, self._producer.flush, FLUSH_TIMEOUT_S)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise EmitFailed(f"{remaining} re-keyed events undelivered after {FLUSH_TIMEOUT_S}s; "
                             f"{len(errors)} failed: {'; '.join(errors[:3])}")

    def close(self) -> None:
        self._producer.flush(10)
