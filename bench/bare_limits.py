"""The physical limits the pipeline is measured against, on the same machine, in the same run.

- ``bare_kafka_loop``: a confluent-kafka consume → produce loop over the
  envelopes already on the broker (consume a batch, produce each value to a
  scratch topic, flush, commit): what Kafka and librdkafka alone allow here,
  with no Python work per message beyond the produce call.
- ``bare_clickhouse_insert``: the same event rows the worker writes,
  inserted as JSONEachRow in the sink's batch size into a chdb database built
  by the real migrations (rollup views included), through the store's own
  ``connect`` and with the writer's ``INSERT_SETTINGS``: what ClickHouse alone
  allows, with no Kafka, no dedupe lookup and no Python per row.

The pipeline's sustained rate divided by the slower of the two is the ratio
issue 18 asks for (≥ 50 %).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from meterline.kafka import create_topics
from meterline.schemas import ClickHouseSettings
from meterline.sinks import connect, migrate
from meterline.sinks.writer import INSERT_SETTINGS

BATCH = 5000


def bare_kafka_loop(bootstrap: str, topic: str, count: int, *, partitions: int) -> float:
    """Messages per second through consume → produce → flush → commit for ``count`` messages."""
    scratch = f"{topic}.bare-copy"
    create_topics(bootstrap, [scratch], partitions=partitions)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-bare-loop",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "log_level": 3})
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "compression.type": "lz4", "batch.num.messages": 10_000,
                         "queue.buffering.max.messages": 500_000, "log_level": 3,
                         "delivery.report.only.error": True})
    consumer.subscribe([topic])
    copied, started = 0, 0.0
    try:
        while copied < count:
            batch = consumer.consume(BATCH, timeout=1.0)
            if not started and batch:
                started = time.monotonic()
            offsets: dict[tuple[str, int], int] = {}
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(error))
                    continue
                while True:
                    try:
                        producer.produce(scratch, message.value(), message.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
                name, partition, offset = message.topic(), message.partition(), message.offset()
                assert name is not None and partition is not None and offset is not None
                offsets[(name, partition)] = offset + 1
                copied += 1
            if offsets:
                if producer.flush(60):
                    raise RuntimeError("bare loop: undelivered messages")
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                asynchronous=False)
        return copied / (time.monotonic() - started)
    finally:
        consumer.close()


def bare_clickhouse_insert(rows: list[bytes], batch_size: int) -> float:
    """Rows per second for JSONEachRow inserts of ``rows`` into a freshly migrated chdb."""
    with tempfile.TemporaryDirectory(prefix="meterline-bare-ch-") as path:
        settings = ClickHouseSettings(dsn=f"chdb://{Path(path) / 'clickhouse'}")
        client: Any = connect(settings)
        migrate(client, settings)
        table = f"{settings.database}.events"
        started = time.monotonic()
        for start in range(0, len(rows), batch_size):
            client.raw_insert(table, insert_block=b"\n".join(rows[start:start + batch_size]),
                              fmt="JSONEachRow", settings=INSERT_SETTINGS)
        elapsed = time.monotonic() - started
        client.close()
    return len(rows) / elapsed
