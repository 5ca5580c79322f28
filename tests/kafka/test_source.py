"""TopicSource commits only in the log it read: a broker that restarts empty is noticed.

A broker of the test's own (tansu, memory storage) is stopped and started: it
comes back with no topics, offsets or groups, the topic is re-created, and the
new log is shorter than the old one. The sink's next commit must not put the
old log's position on the new one.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from meterline.embedded import EmbeddedBroker, TopicIncarnations, create_topics
from meterline.kafka import TopicSource
from meterline.schemas import KafkaSettings, StoreSettings
from tests.harness import unique_prefix

STORE = StoreSettings(max_batch_size=500, max_batch_time_s=0.2)



def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value, key=value)
    assert producer.flush(10) == 0


def _read(source: TopicSource, count: int, timeout_s: float = 30) -> list[bytes]:
    stop, values = threading.Event(), list[bytes]()
    deadline = time.monotonic() + timeout_s
    while len(values) < count and time.monotonic() < deadline:
        batch = source.batch(stop)
        values += [message.value() for message in batch]
        if batch:
            source.commit(batch)
    return values


def _committed(bootstrap: str, group_id: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id})
    try:
        [partition] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(partition.offset)
    finally:
        consumer.close()


def test_a_restarted_broker_is_read_from_the_new_logs_start(own_broker: EmbeddedBroker) -> None:
    bootstrap = own_broker.bootstrap_servers
    kafka = KafkaSettings(embedded=True, bootstrap_servers=bootstrap, topic_prefix=unique_prefix())
    topic, group = f"{kafka.topic_prefix}.events.v1", f"{kafka.topic_prefix}-sink"
    create_topics(bootstrap, [topic], partitions=1)
    _produce(bootstrap, topic, [b"old-%d" % n for n in range(50)])
    source = TopicSource(kafka, STORE, group_id=group, topic=topic, name="test sink")
    source.open()
    try:
        assert len(_read(source, 50)) == 50
        assert _committed(bootstrap, group, topic) == 50

        own_broker.stop()  # memory storage: topics, offsets and groups are gone
        own_broker.start()
        create_topics(bootstrap, [topic], partitions=1)
        new = [b"new-%d" % n for n in range(20)]
        _produce(bootstrap, topic, new)

        # The consumer held position 50; the new log ends at 20. Its first commit after
        # the restart is refused and it starts over, so it reads the new log (again).
        read_again = _read(source, 40)
        assert source.restarts == 1
        assert set(read_again) == set(new) and read_again[-20:] == new
        assert _committed(bootstrap, group, topic) == 20
    finally:
        source.close()


def test_incarnations_report_a_recreated_topic_and_never_create_one(
        own_broker: EmbeddedBroker) -> None:
    bootstrap = own_broker.bootstrap_servers
    kafka = KafkaSettings(embedded=True, bootstrap_servers=bootstrap, topic_prefix=unique_prefix())
    kept, absent = f"{kafka.topic_prefix}.kept", f"{kafka.topic_prefix}.absent"
    create_topics(bootstrap, [kept], partitions=1)
    incarnations = TopicIncarnations(kafka)
    incarnations.remember([kept, absent])
    assert incarnations.recreated([kept, absent]) == []
    assert absent not in AdminClient({"bootstrap.servers": bootstrap}).list_topics(
        timeout=10).topics  # asking did not create it

    own_broker.stop()
    own_broker.start()
    assert incarnations.recreated([kept]) == [kept]  # gone
    create_topics(bootstrap, [kept], partitions=1)
    assert incarnations.recreated([kept]) == [kept]  # back, with a new id
