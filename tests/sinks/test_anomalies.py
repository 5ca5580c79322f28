"""The anomalies writer and sink: each finding stored once, on real ClickHouse and Kafka."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer

from meterline.schemas import Anomaly, KafkaSettings, StoreSettings, Topics
from meterline.sinks.anomalies import AnomalySink, AnomalyWriter
from tests.harness import wait_until

pytestmark = pytest.mark.store

START = datetime(2026, 9, 15, 3, tzinfo=UTC)


def finding(index: int, *, kind: Any = "request_spike", entity: str = "key_a") -> Anomaly:
    start = START + timedelta(hours=index)
    return Anomaly.build(kind=kind, severity="critical", team="platform", entity_kind="key",
                         entity=entity, unit="requests", observed=400.0, expected=0.0,
                         threshold=120.0, window_start=start, window_end=start + timedelta(hours=1),
                         detected_at=start + timedelta(minutes=12), summary="key key_a: 400 calls",
                         evidence={"user": "alice", "model": "claude-sonnet-4-5",
                                   "request_id": f"r{index}"})


def test_replayed_findings_are_stored_once_with_their_entity(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    writer = AnomalyWriter(client, database)
    batch = [finding(i) for i in range(5)]
    assert len(writer.write(batch + batch[:2])) == 5
    assert writer.write(batch) == []
    assert len(writer.write([*batch, finding(9)])) == 1
    rows = client.query(f"SELECT kind, team, user, key_id, model, observed, request_ids, details "
                        f"FROM {database}.anomalies ORDER BY window_start").result_rows
    assert len(rows) == 6
    kind, team, user, key_id, model, observed, request_ids, details = rows[0]
    assert (kind, team, user, key_id, model, observed, request_ids) == (
        "request_spike", "platform", "alice", "key_a", "claude-sonnet-4-5", 400.0, ["r0"])
    assert json.loads(details)["entity"] == "key_a"


def test_sink_consumes_the_topic_and_hands_batches_on(broker: str, topics: Topics,
                                                      clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    kafka = KafkaSettings(embedded=True, bootstrap_servers=broker, topic_prefix=topics.prefix)
    handed: list[str] = []
    sink = AnomalySink(kafka, StoreSettings(max_batch_time_s=0.2), AnomalyWriter(client, database),
                       on_stored=lambda batch: handed.extend(a.anomaly_id for a in batch),
                       group_id=f"{topics.prefix}-anomaly-sink")
    producer = Producer({"bootstrap.servers": broker})
    findings = [finding(i) for i in range(4)]
    for anomaly in [*findings, findings[0]]:
        producer.produce(topics.anomalies, key=anomaly.anomaly_id.encode(),
                         value=anomaly.model_dump_json().encode())
    producer.produce(topics.anomalies, key=b"x", value=b"not an anomaly")
    producer.flush(30)
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: len(handed) >= 5, 90, message="five findings handed on")
    finally:
        stop.set()
        thread.join(30)
    assert sink.stored == 4
    count = client.query(f"SELECT count() FROM {database}.anomalies").result_rows[0][0]
    assert count == 4
