"""Which incarnation of a topic a consumer is reading: its topic id.

A topic's id (KIP-516) changes when the topic is deleted and re-created. That
is what happens to every topic when the embedded broker (tansu, memory
storage) restarts: it comes back empty, and the producers re-create the
topics. A consumer that lives through that restart still holds positions in
the old log. If it committed them, the group would skip the new log's first
offsets: every envelope the gateway replays there would be lost to the
pipeline (docs/durability.md, defect 3). So every consumer that commits
checks, just before each commit, that the topics it commits for are the ones
it started on (``TopicIncarnations.recreated``), and starts over with no
positions when they are not. With Apache Kafka (compose) topic ids change only
when an operator deletes and re-creates a topic, and starting over is right
there too: the old offsets describe a log that no longer exists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from meterline.schemas import KafkaSettings

from .clients import KafkaClients

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0


class BrokerUnreachable(Exception):
    """The topics' ids could not be read: whether they changed is unknown."""


def topic_identity(admin: AdminClient, topic: str, timeout_s: float) -> str | None:
    """The topic's id, or None if unknown. Only for an existing topic: tansu
    auto-creates any topic a metadata request names."""
    try:
        future = admin.describe_topics(TopicCollection([topic]),
                                       request_timeout=timeout_s)[topic]
        return str(future.result(timeout_s).topic_id)
    except KafkaException:
        return None


class TopicIncarnations:
    """The ids of the topics a consumer reads, as first seen, and whether they changed.

    Blocking (two metadata requests, a few ms on loopback): call it from a
    thread that may block, not from an event loop. Not thread-safe.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._admin = KafkaClients(kafka, role="incarnations").admin()
        self._ids: dict[str, str] = {}

    def _current(self, topics: list[str]) -> dict[str, str | None]:
        """Each topic's id now; None for a topic that does not exist (not created by asking)."""
        if not topics:
            return {}
        try:
            existing = set(self._admin.list_topics(timeout=CHECK_TIMEOUT_S).topics)
        except KafkaException as exc:
            raise BrokerUnreachable(str(exc)) from exc
        present = [topic for topic in topics if topic in existing]
        current: dict[str, str | None] = {topic: None for topic in topics}
        if present:  # one request for all of them
            futures = self._admin.describe_topics(TopicCollection(present),
                                                  request_timeout=CHECK_TIMEOUT_S)
            try:
                current.update({topic: str(future.result(CHECK_TIMEOUT_S).topic_id)
                                for topic, future in futures.items()})
            except KafkaException as exc:
                raise BrokerUnreachable(str(exc)) from exc
        return current

    def remember(self, topics: Iterable[str]) -> None:
        """Record the ids of those ``topics`` that exist and are not yet recorded."""
        for topic, topic_id in self._current([t for t in topics if t not in self._ids]).items():
            if topic_id is not None:
                self._ids[topic] = topic_id

    def recreated(self, topics: Iterable[str]) -> list[str]:
        """Those of ``topics`` whose id is no longer the one first seen (gone, or new).

        A topic seen for the first time is recorded, not reported. Raises
        ``BrokerUnreachable`` when the broker cannot tell: the caller must not
        commit then either.
        """
        wanted = list(dict.fromkeys(topics))
        changed = []
        for topic, topic_id in self._current(wanted).items():
            known = self._ids.get(topic)
            if known is None:
                if topic_id is not None:
                    self._ids[topic] = topic_id
            elif topic_id != known:
                log.error("topic %s was re-created (id %s, now %s): the positions read in it "
                          "belong to a log that no longer exists", topic, known, topic_id)
                changed.append(topic)
        return changed
