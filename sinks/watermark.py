"""The sink's confirmations: request ids now durable in ClickHouse, for the gateways.

``WatermarkPublisher.publish`` is called by ``EventSink`` after each batch is
stored (``EventWriter.write`` returned), with every request id of the batch,
new or already stored. It produces them to ``Topics.sink_watermarks`` in the
compact format of ``meterline.schemas.watermark``; each gateway then truncates
its spool behind them. Why ids and not a single "stored up to" position: the
events topic has several partitions processed at different speeds, so no
single time or id bounds what is stored; the exact set does, and costs 16
bytes per event.

It never blocks the sink and never raises: produce is asynchronous, and a
confirmation that fails to publish only makes a gateway replay a duplicate,
which the writer ignores. ``close`` flushes briefly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from meterline.kafka import KafkaClients
from meterline.schemas import SCHEMA_VERSION_HEADER, KafkaSettings, Topics
from meterline.schemas.watermark import WATERMARK_SCHEMA_VERSION, encode_confirmations

log = logging.getLogger(__name__)


class WatermarkPublisher:
    def __init__(self, kafka: KafkaSettings) -> None:
        self._topic = Topics(kafka.topic_prefix).sink_watermarks
        self._producer = KafkaClients(kafka, role="store").producer(
            **{"linger.ms": 5, "message.timeout.ms": 30_000, "error_cb": self._on_error})
        self.published = 0
        self.failed = 0

    def publish(self, request_ids: Sequence[str]) -> None:
        """Confirm ``request_ids`` as stored. Asynchronous; never raises."""
        for value in encode_confirmations(request_ids):
            try:
                self._producer.produce(
                    self._topic, value=value,
                    headers={SCHEMA_VERSION_HEADER: WATERMARK_SCHEMA_VERSION},
                    on_delivery=self._on_delivery)
            except (BufferError, KafkaException) as exc:
                self.failed += 1
                log.warning("sink confirmation not published (%s); gateways will replay "
                            "duplicates", exc)
        self._producer.poll(0)

    def _on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        if error is None:
            self.published += 1
        else:
            self.failed += 1
            log.warning("sink confirmation lost (%s); gateways will replay duplicates", error)

    def _on_error(self, error: KafkaError) -> None:
        log.debug("watermark producer: %s", error)

    def close(self, timeout_s: float = 2.0) -> None:
        self._producer.flush(timeout_s)
