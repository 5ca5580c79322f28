"""The sink loop: events topic → ClickHouse, offsets committed after rows are durable.

``EventSink.run`` blocks until ``stop`` is set. Each cycle:

1. consume up to ``max_batch_size`` messages or for ``max_batch_time_s``;
2. write them with ``EventWriter`` (idempotent: a request id stored once);
3. publish the batch's request ids as stored (``WatermarkPublisher``), so
   gateways truncate their spools behind them: asynchronous, never blocks, a
   lost confirmation only costs a duplicate replay;
4. commit, per partition, the offset after the last message written.

If the process dies after 2 and before 4, the batch is consumed again and
step 2 stores nothing new. If ClickHouse refuses the write, nothing is
committed, the batch is kept, and the write is retried with backoff: a busy
store slows the sink, it never skips events. A message without a key (no
request id) is a poison message: it is logged with its position and skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from meterline.schemas import KafkaSettings, StoreSettings, Topics

from .errors import StoreUnavailable
from .watermark import WatermarkPublisher
from .writer import EventWriter

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0


def consumer_config(kafka: KafkaSettings, group_id: str) -> dict[str, Any]:
    return {
        **kafka.as_librdkafka(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": max(kafka.session_timeout_ms // 6, 250),
        "log_level": 3,
    }


def collect_batch(consumer: Consumer, store: StoreSettings, stop: threading.Event,
                  name: str) -> list[Any]:
    """Up to ``store.max_batch_size`` messages, or what arrives in ``store.max_batch_time_s``.

    Consume errors other than end-of-partition are logged under ``name`` and skipped.
    """
    batch: list[Any] = []
    deadline = time.monotonic() + store.max_batch_time_s
    while len(batch) < store.max_batch_size and not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for message in consumer.consume(store.max_batch_size - len(batch),
                                        timeout=min(remaining, 0.1)):
            error = message.error()
            if error is None:
                batch.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("%s consume error: %s", name, error)
    return batch


class EventSink:
    """Consumes the events topic into ClickHouse. Counters are for metrics and tests."""

    def __init__(self, kafka: KafkaSettings, store: StoreSettings, writer: EventWriter, *,
                 group_id: str = "", publish_watermarks: bool = True) -> None:
        self._topic = Topics(kafka.topic_prefix).events
        self._store = store
        self._writer = writer
        # scoped by the topic prefix like the faust groups: ``meterline-sink`` by default
        self._consumer = Consumer(consumer_config(kafka, group_id or f"{kafka.topic_prefix}-sink"))
        self.consumed = 0
        self.written = 0
        self.ready = threading.Event()
        self._watermarks = WatermarkPublisher(kafka) if publish_watermarks else None

    def run(self, stop: threading.Event) -> None:
        self._consumer.subscribe([self._topic], on_assign=self._on_assign)
        try:
            while not stop.is_set():
                batch = self._collect(stop)
                if batch:
                    self._flush(batch, stop)
        finally:
            self._consumer.close()
            if self._watermarks is not None:
                self._watermarks.close()

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("sink assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))
        self.ready.set()

    def _collect(self, stop: threading.Event) -> list[Any]:
        return collect_batch(self._consumer, self._store, stop, "sink")

    def _flush(self, batch: list[Any], stop: threading.Event) -> None:
        rows = []
        for message in batch:
            key = message.key()
            if not key:
                log.error("skipping event without request id at %s[%d]@%d",
                          message.topic(), message.partition(), message.offset())
                continue
            rows.append((key.decode(), message.value()))
        def store() -> None:
            self.written += self._writer.write(rows)
        if not store_until_done(store, stop, f"{len(rows)} events"):
            return
        self.consumed += len(batch)
        if self._watermarks is not None:
            self._watermarks.publish([request_id for request_id, _ in rows])
        commit_batch(self._consumer, batch)


def store_until_done(store: Callable[[], None], stop: threading.Event, what: str) -> bool:
    """Run ``store`` until ClickHouse takes it, backing off while it refuses.

    Returns False if ``stop`` was set meanwhile: the caller commits nothing, and
    the batch is consumed again later (every sink's writes are idempotent).
    """
    backoff_s = 0.1
    while True:
        try:
            store()
            return True
        except StoreUnavailable as exc:
            log.warning("store refused %s (%s); retrying in %.1fs", what, exc, backoff_s)
            if stop.wait(backoff_s):
                return False
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)


def commit_batch(consumer: Consumer, batch: list[Any]) -> None:
    """Commit, synchronously and per partition, the offset after the batch's last message.

    A failed commit is logged, not raised: the batch is stored, so consuming it
    again stores nothing new, and a broker outage or restart must not kill a sink.
    """
    next_offsets: dict[tuple[str, int], int] = {}
    for message in batch:
        next_offsets[(message.topic(), message.partition())] = message.offset() + 1
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset)
                                 for (topic, partition), offset in next_offsets.items()],
                        asynchronous=False)
    except KafkaException as exc:
        log.warning("offset commit failed (%s); the batch will be consumed again", exc)
