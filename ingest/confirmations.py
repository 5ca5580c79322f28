"""The gateway's reader of sink confirmations: truncates the spool behind the sink.

``ConfirmationReader`` runs one thread that reads the ``sink_watermarks``
topic (see ``meterline.schemas.watermark``) and hands every confirmed request
id to ``Spool.confirm``, then ``Spool.release``. Every gateway reads every
confirmation, so it assigns itself all partitions directly instead of joining
a consumer group: no rebalance, no ~30 s join on tansu, and no offsets to
commit (it never needs them, see below).

Where it starts reading: from the beginning when the spool held outstanding
envelopes at start-up (confirmations published while this gateway was down
must be seen, or those envelopes would be replayed needlessly), else from the
end. When the broker restarts empty the topic is re-created, and the old
positions may point past the new log's end or, worse, into it, skipping what
the sink confirmed since; tansu does not answer OFFSET_OUT_OF_RANGE either.
So every refresh compares the topic's id (``topic_identity``) with the
one it had, and reads every partition again from the start when it changed
(a position past the high watermark is the fallback when ids are unknown).
A lost confirmation only costs a duplicate on replay. Both checks are the
embedded broker's (``meterline.kafka`` policy): on Apache Kafka, which keeps
its logs across restarts, neither runs.

``caught_up`` is set once a poll comes back empty after assignment: the
replayer waits for it (briefly) before its start-up replay.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

from meterline.kafka import KafkaClients
from meterline.kafka.incarnation import topic_identity
from meterline.schemas import SCHEMA_VERSION_HEADER, Groups, KafkaSettings, Topics
from meterline.schemas.watermark import WATERMARK_SCHEMA_VERSION, decode_confirmations

from .spool import Spool

log = logging.getLogger(__name__)

METADATA_REFRESH_S = 2.0
RELEASE_INTERVAL_S = 1.0


class ConfirmationReader:
    def __init__(self, kafka: KafkaSettings, spool: Spool, *, from_beginning: bool) -> None:
        self._topic = Topics(kafka.topic_prefix).sink_watermarks
        self._spool = spool
        self._start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        clients = KafkaClients(kafka, role="gateway")
        # Never used to commit: a group is required by librdkafka even for assign().
        self._consumer = clients.consumer(
            Groups(kafka.topic_prefix).confirmations_reader(uuid.uuid4().hex[:12]))
        self._watch_incarnations = clients.policy.watch_topic_incarnations
        self._admin = clients.admin() if self._watch_incarnations else None
        self._topic_id: str | None = None
        self._assigned: set[int] = set()
        self.messages = 0
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-confirmations", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _refresh_assignment(self) -> None:
        try:
            metadata = self._consumer.list_topics(timeout=2.0)  # naming it would auto-create it
        except KafkaException as exc:
            log.debug("watermark topic metadata unavailable: %s", exc)
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
            log.info("reading sink confirmations from %s[%s]", self._topic,
                     ",".join(map(str, sorted(partitions))))
            return
        if not self._watch_incarnations:
            return  # Apache Kafka keeps its logs: positions never point past them
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
        next_refresh = next_release = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_refresh:
                    self._refresh_assignment()
                    next_refresh = now + METADATA_REFRESH_S
                if not self._assigned:
                    self._stop.wait(0.5)
                    continue
                messages = self._consumer.consume(1000, timeout=0.5)
                if not messages:
                    self.caught_up.set()
                for message in messages:
                    self._apply(message)
                if now >= next_release:
                    self._spool.release()
                    next_release = now + RELEASE_INTERVAL_S
        finally:
            self._consumer.close()

    def _apply(self, message: Any) -> None:
        if message.error() is not None:
            log.debug("watermark consume: %s", message.error())
            return
        headers = dict(message.headers() or [])
        version = headers.get(SCHEMA_VERSION_HEADER, b"").decode(errors="replace")
        if version.partition(".")[0] != WATERMARK_SCHEMA_VERSION.partition(".")[0]:
            log.warning("skipping confirmation %s[%d]@%d: schema_version %r",
                        message.topic(), message.partition(), message.offset(), version)
            return
        self._spool.confirm(decode_confirmations(message.value() or b""))
        self.messages += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
