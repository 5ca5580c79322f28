"""Where every batch loop reads from: one topic, in batches, committed only in the log it read.

``TopicSource`` wraps the librdkafka consumer that the event, anomaly and
audit sinks and the enrichment worker share. Its contract:

- ``batch`` blocks for at most ``limits.max_batch_time_s`` and returns up to
  ``limits.max_batch_size`` messages (maybe none);
- ``commit`` is called after the batch's output is durable (rows in
  ClickHouse, events acknowledged by the broker). In steps:

  1. on the embedded broker only (``meterline.kafka`` policy: Apache Kafka does
     not lose its topics, so this costs it nothing): check that the topic is
     still the one this consumer started on (its topic id,
     ``TopicIncarnations``). If the broker cannot tell, commit nothing: the
     batch is stored, so reading it again stores nothing new.
  2. if the topic was re-created (the embedded broker restarted empty), commit
     nothing and start over: close the consumer and open a new one, which
     reads the new log from its start. Committing here would have put the old
     log's positions on the new one and skipped its first offsets for good
     (docs/durability.md, defect 3).
  3. otherwise commit, synchronously and per partition, the offset after the
     batch's last message. A failed commit is logged, not raised: a broker
     outage must not kill a sink.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from meterline.schemas import KafkaSettings

from .clients import KafkaClients
from .incarnation import BrokerUnreachable, TopicIncarnations

log = logging.getLogger(__name__)


class BatchLimits(Protocol):
    """How big and how old a batch may get (``StoreSettings`` is one)."""

    @property
    def max_batch_size(self) -> int: ...

    @property
    def max_batch_time_s(self) -> float: ...


class TopicSource:
    """One loop's consumer of ``topic`` in group ``group_id``; ``name`` labels its log lines
    and names its static member on Apache Kafka; ``role`` is its process's.

    Used from the loop's one thread: ``run``, or open, then batch/commit in turns, then close.
    """

    def __init__(self, kafka: KafkaSettings, limits: BatchLimits, *, group_id: str, topic: str,
                 name: str, role: str = "store",
                 on_assign: Callable[[list[TopicPartition]], None] | None = None) -> None:
        self._kafka = kafka
        self._clients = KafkaClients(kafka, role=role)
        self._limits = limits
        self._group_id = group_id
        self._topic = topic
        self._name = name
        self._on_assign = on_assign
        self._incarnations = (TopicIncarnations(kafka)
                              if self._clients.policy.guard_topic_incarnations else None)
        self._consumer = self._new_consumer()
        self.restarts = 0

    def _new_consumer(self) -> Any:
        return self._clients.consumer(self._group_id, member=self._name.replace(" ", "-"))

    def open(self) -> None:
        """Subscribe, after noting which incarnation of the topic this is (if it exists)."""
        if self._incarnations is not None:
            try:
                self._incarnations.remember([self._topic])
            except BrokerUnreachable as exc:
                log.warning("%s: broker unreachable at start (%s); topic id noted later",
                            self._name, exc)
        self._consumer.subscribe([self._topic], on_assign=self._assigned)

    def close(self) -> None:
        self._consumer.close()

    def run(self, stop: threading.Event,
            flush: Callable[[list[Any], threading.Event], None]) -> None:
        """Open, hand each non-empty batch to ``flush`` until ``stop`` is set, then close.

        ``flush`` stores the batch and calls ``commit`` when it is durable; it
        may return without committing (``stop`` set while ClickHouse refused).
        """
        self.open()
        try:
            while not stop.is_set():
                batch = self.batch(stop)
                if batch:
                    flush(batch, stop)
        finally:
            self.close()

    def _assigned(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("%s assigned %s", self._name,
                 ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))
        if self._on_assign is not None:
            self._on_assign(partitions)

    def batch(self, stop: threading.Event) -> list[Any]:
        """Up to ``limits.max_batch_size`` messages, or what arrives in ``limits.max_batch_time_s``.

        Consume errors other than end-of-partition are logged and skipped. A
        fatal one (librdkafka's consumer is then unusable: on Apache Kafka, a
        static member fenced after an outage, ``FENCED_INSTANCE_ID``) drops the
        batch, uncommitted, and opens a new consumer, which re-reads it.
        """
        batch: list[Any] = []
        deadline = time.monotonic() + self._limits.max_batch_time_s
        while len(batch) < self._limits.max_batch_size and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                messages = self._consumer.consume(self._limits.max_batch_size - len(batch),
                                                  timeout=min(remaining, 0.1))
            except KafkaException as exc:
                if not (exc.args and isinstance(exc.args[0], KafkaError) and _fatal(exc.args[0])):
                    raise
                self._reopen(str(exc.args[0]))
                return []
            good = [message for message in messages if message.error() is None]
            batch += good
            if len(good) == len(messages):
                continue  # the usual case: one pass, no per-message branches
            for message in messages:
                error = message.error()
                if error is None:
                    continue
                if _fatal(error):
                    self._reopen(str(error))
                    return []
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s consume error: %s", self._name, error)
        return batch

    def _reopen(self, reason: str) -> None:
        """Replace a consumer that librdkafka declared unusable; commits nothing."""
        log.error("%s: fatal consumer error (%s); opening a new consumer, which resumes from "
                  "the committed offsets", self._name, reason)
        self._replace_consumer()

    def commit(self, batch: list[Any]) -> None:
        """Commit past ``batch`` (stored), or start over if the topic was re-created."""
        if self._incarnations is not None:
            try:  # step 1
                recreated = self._incarnations.recreated([self._topic])
            except BrokerUnreachable as exc:
                log.warning("%s: not committing, broker cannot tell the topic's id (%s); "
                            "the batch will be consumed again", self._name, exc)
                return
            if recreated:  # step 2
                self._start_over()
                return
        next_offsets: dict[tuple[str, int], int] = {}  # step 3
        for message in batch:
            next_offsets[(message.topic(), message.partition())] = message.offset() + 1
        try:
            self._consumer.commit(offsets=[TopicPartition(topic, partition, offset)
                                           for (topic, partition), offset in next_offsets.items()],
                                  asynchronous=False)
        except KafkaException as exc:
            log.warning("%s: offset commit failed (%s); the batch will be consumed again",
                        self._name, exc)

    def _start_over(self) -> None:
        log.error("%s: %s was re-created; reading it again from its start, committing nothing "
                  "from the old log", self._name, self._topic)
        self._incarnations = TopicIncarnations(self._kafka)
        self._replace_consumer()

    def _replace_consumer(self) -> None:
        """Close the consumer (an error closing a broken one changes nothing) and open anew."""
        with contextlib.suppress(KafkaException, RuntimeError):
            self._consumer.close()
        self._consumer = self._new_consumer()
        self.restarts += 1
        self.open()


def _fatal(error: KafkaError) -> bool:
    """librdkafka reports a fatal consumer error as ``_FATAL`` on the message, not always
    with ``fatal()`` set."""
    return bool(error.fatal() or error.code() == KafkaError._FATAL)
