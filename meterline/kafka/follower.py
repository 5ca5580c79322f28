"""Following a whole topic from one thread, without a consumer group.

``TopicFollower`` assigns itself every partition of one topic and hands each
message to ``apply``. Every process that follows a topic reads all of it
(every gateway reads every sink confirmation and every key event), so it
joins no group: no rebalance, no ~30 s join on tansu, and no offsets to
commit. Subclasses say where to start (``start``: beginning or end) and what
to do with a message (``apply``), and may do periodic work in ``tick``.

When the broker restarts empty the topic is re-created, and the old
positions may point past the new log's end or, worse, into it, skipping what
was published since; tansu does not answer OFFSET_OUT_OF_RANGE either. So
every refresh compares the topic's id (``topic_identity``) with the one it
had, and reads every partition again from the start when it changed (a
position past the high watermark is the fallback when ids are unknown). Both
checks are the embedded broker's (``meterline.kafka`` policy): on Apache
Kafka, which keeps its logs across restarts, neither runs.

``caught_up`` is set once a poll comes back empty after assignment. ``news``
waits for "everything published before now has been applied": the follower's
thread reads each partition's high watermark from the broker after the ask,
and answers once its position has reached them (one watermark read serves
every ask made before it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

from meterline.schemas import Groups, KafkaSettings

from .clients import KafkaClients
from .incarnation import topic_identity

log = logging.getLogger(__name__)

METADATA_REFRESH_S = 2.0


class TopicFollower:
    """One thread reading every partition of ``topic``; subclass and define ``apply``."""

    #: How long one poll waits for messages: about how long ``news`` takes to answer.
    poll_timeout_s = 0.5

    def __init__(self, kafka: KafkaSettings, topic: str, *, from_beginning: bool, role: str,
                 name: str, consumer_config: dict[str, Any] | None = None) -> None:
        self._topic = topic
        self._start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        clients = KafkaClients(kafka, role=role)
        # Never used to commit: a group is required by librdkafka even for assign().
        self._consumer = clients.consumer(
            Groups(kafka.topic_prefix).confirmations_reader(uuid.uuid4().hex[:12]),
            **(consumer_config or {}))
        self._watch_incarnations = clients.policy.watch_topic_incarnations
        self._admin = clients.admin() if self._watch_incarnations else None
        self._topic_id: str | None = None
        self._assigned: set[int] = set()
        self.messages = 0
        # news: asks made (any thread), taken (their watermarks read), answered
        self._asks = self._asked = self._answered = 0
        self._targets: dict[int, int] = {}
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def apply(self, message: Any) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Called after every poll, ``now`` from ``time.monotonic``; does nothing here."""

    def prepare(self) -> None:
        """Called once on the follower's thread before the first poll; does nothing here."""

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def news(self, timeout_s: float) -> bool:
        """Wait (without blocking the event loop) until what was published before the call
        has been applied; False on timeout or when the topic is not assigned yet."""
        ask = self._asks = self._asks + 1
        deadline = time.monotonic() + timeout_s
        while self._answered < ask:
            if time.monotonic() >= deadline or self._stop.is_set():
                return False
            await asyncio.sleep(0.01)
        return True

    def _take_asks(self) -> None:
        """On the thread: read the high watermarks that the asks made so far wait for. Asks
        made later wait for the next read, so a stream of asks cannot starve the first."""
        if self._asks == self._asked or self._asked > self._answered or not self._assigned:
            return
        asked, targets = self._asks, {}
        for partition in self._assigned:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, partition), timeout=1.0, cached=False)
            except KafkaException:
                return  # read again on the next loop
            if high > 0:
                targets[partition] = high
        self._asked, self._targets = asked, targets

    def _answer_asks(self) -> None:
        """On the thread: answer the taken asks once every position reached its watermark."""
        if self._asked == self._answered:
            return
        if self._targets:
            positions = self._consumer.position(
                [TopicPartition(self._topic, p) for p in self._targets])
            if any(pos.offset < self._targets[pos.partition] for pos in positions):
                return
        self._answered, self._targets = self._asked, {}

    def _refresh_assignment(self) -> None:
        try:
            metadata = self._consumer.list_topics(timeout=2.0)  # naming it would auto-create it
        except KafkaException as exc:
            log.debug("%s metadata unavailable: %s", self._topic, exc)
            return
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None:
            return
        partitions = set(topic.partitions)
        topic_id = (topic_identity(self._admin, self._topic, 2.0)
                    if self._admin is not None else None)
        if topic_id and self._topic_id and topic_id != self._topic_id and self._assigned:
            log.warning("%s was re-created (broker restarted empty?); reading it again from "
                        "the start", self._topic)
            self._assigned = set()
            self._start = OFFSET_BEGINNING
        self._topic_id = topic_id or self._topic_id
        if partitions != self._assigned:
            start = self._start
            self._start = OFFSET_BEGINNING  # a partition added later is read whole
            self._consumer.assign([TopicPartition(self._topic, p, start) for p in partitions])
            self._assigned = partitions
            log.info("following %s[%s]", self._topic, ",".join(map(str, sorted(partitions))))
            return
        if self._watch_incarnations:
            self._rewind_if_truncated(partitions)

    def _rewind_if_truncated(self, partitions: set[int]) -> None:
        for position in self._consumer.position(
                [TopicPartition(self._topic, p) for p in sorted(partitions)]):
            if position.offset < 0:
                continue
            try:
                _, high = self._consumer.get_watermark_offsets(position, timeout=1.0)
            except KafkaException:
                return
            if high < position.offset:
                log.warning("%s[%d] went back from offset %d to %d (broker restarted empty); "
                            "reading it again from the start", self._topic,
                            position.partition, position.offset, high)
                self._consumer.seek(TopicPartition(self._topic, position.partition,
                                                   OFFSET_BEGINNING))

    def _run(self) -> None:
        next_refresh = 0.0
        try:
            self.prepare()
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_refresh:
                    self._refresh_assignment()
                    next_refresh = now + METADATA_REFRESH_S
                if not self._assigned:
                    self._stop.wait(min(0.5, self.poll_timeout_s))
                    continue
                self._take_asks()
                messages = self._consumer.consume(1000, timeout=self.poll_timeout_s)
                if not messages:
                    self.caught_up.set()
                for message in messages:
                    if message.error() is not None:
                        log.debug("%s consume: %s", self._topic, message.error())
                        continue
                    self.apply(message)
                    self.messages += 1
                self._answer_asks()
                self.tick(now)
        finally:
            self._consumer.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
