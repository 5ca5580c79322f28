"""The enrichment worker (``meterline worker``): envelopes in, events and dead letters out.

A batch loop on confluent-kafka (arroyo's shape), not a faust agent. Per
batch, in steps:

1. ``TopicSource.batch``: up to ``BATCH_SIZE`` envelopes, or what arrives in
   ``BATCH_WITHIN_S``, straight from librdkafka's queue;
2. each envelope becomes an event row (the pure ``event_row``) queued on the
   ``BatchEmitter`` keyed by request id; a poison envelope is queued to the
   dead-letter topic with its reason and source position instead; a policy
   breach also queues its anomaly;
3. ``BatchEmitter.flush_durable``: every message of the batch is acknowledged
   by the broker (``acks=all``), or ``EmitFailed`` crashes the process with
   nothing committed;
4. ``TopicSource.commit``: the offset after each partition's last envelope.

Guarantee: the committed offset never passes an envelope whose event or
dead letter is not durable. Delivery is at least once: a crash replays the
uncommitted tail, and the sink stores each request id once.

Why not faust here (docs/architecture.md, "The enrichment worker"): measured,
faust's per-message consume path (aiokafka's fetcher in Python, the
conductor, ``Event`` objects, acknowledgement bookkeeping) was most of the
worker's 197 µs of CPU per envelope; librdkafka hands over a batch of
messages from C. The worker keeps no state between batches, so it needs
none of faust's tables. It also needs none of the faust guards the embedded
broker required (``meterline.embedded.faust_guards``): ``TopicSource`` does
the topic-id check itself, and only on the embedded broker.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from meterline.kafka import TopicSource
from meterline.schemas import Groups, Settings, Topics

from .anomaly.agent import encode_anomaly
from .egress import breach_anomaly
from .emit import BatchEmitter
from .enrich import Directory, encode_event_row, event_row
from .errors import PoisonMessage
from .price_book import PriceBook
from .validate import parse_envelope

log = logging.getLogger(__name__)

__all__ = ["BATCH_SIZE", "BATCH_WITHIN_S", "EnrichWorker"]

BATCH_SIZE = 5000
BATCH_WITHIN_S = 0.1


@dataclass(frozen=True, slots=True)
class _Batching:
    max_batch_size: int = BATCH_SIZE
    max_batch_time_s: float = BATCH_WITHIN_S


class EnrichWorker:
    """One worker process's loop; ``run`` blocks until ``stop`` is set or a batch fails."""

    def __init__(self, settings: Settings) -> None:
        prefix = settings.kafka.topic_prefix
        self._source = TopicSource(settings.kafka, _Batching(), role="worker",
                                   group_id=Groups(prefix).processors,
                                   topic=Topics(prefix).envelopes, name="enrich",
                                   on_assign=lambda _: self.ready.set())
        self._emitter = BatchEmitter(settings.kafka, role="worker")
        self._directory = Directory(settings)
        self._book = PriceBook(settings.prices,
                               {name: p.kind for name, p in settings.providers.items()})
        self.ready = threading.Event()
        self.enriched = 0
        self.dead_lettered = 0

    def run(self, stop: threading.Event) -> None:
        try:
            self._source.run(stop, self._flush)
        finally:
            self._emitter.close()

    def _flush(self, batch: list[Any], _stop: threading.Event) -> None:
        for message in batch:  # step 2
            self._enrich(message)
        self._emitter.flush_durable()  # step 3: raises EmitFailed, nothing committed
        self._source.commit(batch)  # step 4

    def _enrich(self, message: Any) -> None:
        value: bytes = message.value()
        try:
            envelope = parse_envelope(value)
        except PoisonMessage as poison:
            source = f"{message.topic()}[{message.partition()}]@{message.offset()}"
            log.warning("dead-lettering %s: %s", source, poison.reason)
            self._emitter.dead_letter(message.key(), value, poison.reason, source)
            self.dead_lettered += 1
            return
        self._emitter.event(envelope.request_id.encode(),
                            encode_event_row(event_row(envelope, self._directory, self._book)))
        if envelope.breaches:
            breach = breach_anomaly(envelope)
            if breach is not None:
                self._emitter.anomaly(breach.anomaly_id.encode(), encode_anomaly(breach))
        self.enriched += 1
