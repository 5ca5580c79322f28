"""The emitter against a real tansu broker: delivery, confirmation, outage, restart."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from meterline.embedded import EmbeddedBroker, create_topics, free_port
from meterline.ingest import EnvelopeEmitter
from meterline.schemas import Envelope, GatewaySettings, KafkaSettings, Topics, new_request_id
from meterline.sinks.watermark import WatermarkPublisher
from tests.harness import unique_prefix, wait_until

pytestmark = pytest.mark.store


def envelope(number: int = 0) -> Envelope:
    now = datetime.now(UTC)
    return Envelope(request_id=new_request_id(), received_at=now, done_at=now,
                    surface="openai.chat", provider="openai", requested_model="gpt-4o-mini",
                    served_model="gpt-4o-mini", key_id=f"key_{number % 7:012x}", user="alice",
                    team="platform", status=200, outcome="ok")


def gateway_settings(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(spool_dir=str(tmp_path / "spool"), spool_segment_max_age_s=0.5,
                           create_missing_topics=True, **overrides)


def read_request_ids(bootstrap: str, topic: str, expected: int, timeout_s: float) -> list[str]:
    """Request ids on ``topic``, read from the start until ``expected`` distinct ones seen.

    All partitions, and metadata of all topics: asking tansu for one topic by name
    auto-creates it with tansu's default partition count.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_prefix("read"),
                         "enable.auto.commit": False, "log_level": 3})
    partitions = wait_until(lambda: getattr(consumer.list_topics(timeout=10).topics.get(topic),
                                            "partitions", None), timeout_s,
                            message=f"topic {topic} exists")
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    ids: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(set(ids)) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    ids.append(orjson.loads(message.value() or b"{}")["request_id"])
    finally:
        consumer.close()
    return ids



def test_every_envelope_delivered_then_confirmed_and_truncated(
        broker: str, topics: Topics, tmp_path: Path) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker, topic_prefix=topics.prefix, partitions=2)
    emitter = EnvelopeEmitter(kafka, gateway_settings(tmp_path))
    sent = [envelope(n) for n in range(300)]
    for item in sent:
        emitter.emit(item)
    wait_until(lambda: emitter.delivered == 300, 30, message="300 delivered")
    assert sorted(read_request_ids(broker, topics.envelopes, 300, 30)) == sorted(
        e.request_id for e in sent)
    assert emitter.spool_depth == 300  # delivered is not stored: the spool keeps them

    publisher = WatermarkPublisher(kafka)
    publisher.publish([e.request_id for e in sent])
    publisher.close()
    wait_until(lambda: emitter.spool_depth == 0, 30, message="spool confirmed")
    wait_until(lambda: emitter.stats()["spool_segments"] == 0, 30, message="segments released")
    stats = emitter.stats()
    assert (stats["failed"], stats["dropped"], stats["rewinds"]) == (0, 0, 0)
    assert emitter.close(5) == 0


def test_broker_down_is_fail_open_and_spool_replays_in_order_when_it_comes(
        tmp_path: Path) -> None:
    port = free_port()
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", topic_prefix=unique_prefix(),
                          partitions=2)
    emitter = EnvelopeEmitter(kafka, gateway_settings(tmp_path))
    sent = [envelope(n) for n in range(200)]
    started = time.perf_counter()
    for item in sent:
        emitter.emit(item)
    assert time.perf_counter() - started < 1.0  # never waits for the absent broker
    wait_until(lambda: not emitter.stats()["direct"], 10, message="spool-only mode")
    assert emitter.spool_depth == 200

    broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log")
    broker.start()
    try:
        ids = read_request_ids(broker.bootstrap_servers, Topics(kafka.topic_prefix).envelopes,
                               200, 60)
        assert set(ids) == {e.request_id for e in sent}
        wait_until(lambda: emitter.stats()["direct"], 30, message="back to direct mode")
        emitter.emit(late := envelope())
        assert late.request_id in read_request_ids(
            broker.bootstrap_servers, Topics(kafka.topic_prefix).envelopes, 201, 30)
        assert emitter.dropped == 0
        emitter.close(5)
    finally:
        broker.stop()
    by_key: dict[str, list[str]] = {}
    for request_id in ids:  # replay order is spool order, per key (= per partition)
        by_key.setdefault(next(e.key_id for e in sent if e.request_id == request_id),
                          []).append(request_id)
    for key_id, order in by_key.items():
        first_seen = list(dict.fromkeys(order))
        assert first_seen == [e.request_id for e in sent if e.key_id == key_id]


def test_broker_restarting_empty_loses_nothing(own_broker: EmbeddedBroker,
                                               tmp_path: Path) -> None:
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers,
                          topic_prefix=unique_prefix(), partitions=2)
    topic = Topics(kafka.topic_prefix)
    create_topics(own_broker.bootstrap_servers, topic.all(), partitions=2)
    emitter = EnvelopeEmitter(kafka, gateway_settings(tmp_path))
    before = [envelope(n) for n in range(100)]
    for item in before:
        emitter.emit(item)
    wait_until(lambda: emitter.delivered == 100, 30, message="first 100 delivered")

    own_broker.stop()  # everything the broker held is gone; nothing was confirmed
    during = [envelope(n) for n in range(100)]
    for item in during:
        emitter.emit(item)
    own_broker.start()

    ids = read_request_ids(own_broker.bootstrap_servers, topic.envelopes, 200, 90)
    assert set(ids) == {e.request_id for e in before + during}
    assert emitter.stats()["rewinds"] >= 1
    assert emitter.dropped == 0
    emitter.close(5)


def test_emit_costs_microseconds(broker: str, topics: Topics, tmp_path: Path) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker, topic_prefix=topics.prefix, partitions=2)
    emitter = EnvelopeEmitter(kafka, gateway_settings(tmp_path))
    sent = [envelope(n) for n in range(2000)]
    costs_ns = []
    for item in sent:
        started = time.perf_counter_ns()
        emitter.emit(item)
        costs_ns.append(time.perf_counter_ns() - started)
    costs_ns.sort()
    p50_us, p99_us = costs_ns[1000] / 1000, costs_ns[1980] / 1000
    print(f"emit p50 {p50_us:.1f} us, p99 {p99_us:.1f} us, "
          f"fsyncs {emitter.stats()['spool_fsyncs']} for 2000 appends")
    assert p50_us < 1000 and p99_us < 3000  # the gateway's whole added-latency budget
    wait_until(lambda: emitter.delivered == 2000, 30, message="all delivered")
    emitter.close(5)
    assert uuid.UUID(sent[0].request_id).version == 7
