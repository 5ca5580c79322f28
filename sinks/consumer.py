"""The sink loop: events topic → ClickHouse, offsets committed after rows are durable.

``EventSink.run`` blocks until ``stop`` is set. Each cycle:

1. consume up to ``max_batch_size`` messages or for ``max_batch_time_s``;
2. write them with ``EventWriter`` (idempotent: a request id stored once);
3. publish the batch's request ids as stored (``WatermarkPublisher``), so
   gateways truncate their spools behind them: asynchronous, never blocks, a
   lost confirmation only costs a duplicate replay;
4. commit, per partition, the offset after the last message written, unless the
   topic was re-created meanwhile (``TopicSource.commit``, in ``meterline.kafka.source``).

If the process dies after 2 and before 4, the batch is consumed again and
step 2 stores nothing new. If ClickHouse refuses the write, nothing is
committed, the batch is kept, and the write is retried with backoff: a busy
store slows the sink, it never skips events. A message without a key (no
request id) is a poison message: it is logged with its position and skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from meterline.kafka import TopicSource
from meterline.schemas import Groups, KafkaSettings, StoreSettings, Topics

from .errors import StoreUnavailable
from .watermark import WatermarkPublisher
from .writer import EventWriter

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0


class EventSink:
    """Consumes the events topic into ClickHouse. Counters are for metrics and tests."""

    def __init__(self, kafka: KafkaSettings, store: StoreSettings, writer: EventWriter, *,
                 group_id: str = "", publish_watermarks: bool = True) -> None:
        self._writer = writer
        self._source = TopicSource(kafka, store,
                                   group_id=group_id or Groups(kafka.topic_prefix).event_sink,
                                   topic=Topics(kafka.topic_prefix).events, name="sink",
                                   on_assign=lambda _: self.ready.set())
        self.consumed = 0
        self.written = 0
        self.ready = threading.Event()
        self._watermarks = WatermarkPublisher(kafka) if publish_watermarks else None

    def run(self, stop: threading.Event) -> None:
        try:
            self._source.run(stop, self._flush)
        finally:
            if self._watermarks is not None:
                self._watermarks.close()

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
        self._source.commit(batch)


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
