"""The embedded broker's guards for faust apps, on only with ``kafka.embedded``.

``guard_app(app, kafka, topics)`` is what a faust app calls once: with the
embedded broker's policy (``meterline.kafka.quirks``) it installs both guards
below and returns the app's ``OffsetContinuity``; against Apache Kafka it
installs nothing and returns a check that does nothing.

Both guards touch faust's private members (``Consumer._commit``,
``Consumer._committed_offset``), which is why they never run on Kafka and
why the enrichment path's move to a confluent-kafka loop (issue 18) will
drop them.

## Commits never carry positions from a re-created topic

When the embedded broker (tansu, memory storage) restarts, it comes back
empty and the topics are re-created. A faust worker that lives through it
keeps its positions in the old logs: its fetcher drops every message below
the offset it last read (``Consumer._drain_messages``), and its next commit
writes those positions into the new broker's group. The new log's first
offsets are then skipped for good (docs/durability.md, defect 3).

``guard_commits`` wraps the app consumer's commit: before each commit it checks
the committed topics' ids (``TopicIncarnations``, a few ms in a thread, once
per commit interval). If a topic was re-created, it commits nothing and
re-executes the process in place (same pid, same arguments): the fresh worker
finds no offsets in the new group and reads the new logs from their start,
which is at least once, like every other restart (the sink stores a request id
once). A detector also restores its tables from their changelogs, which the
restart emptied too: its month-to-date state starts over.

## An agent sees every offset of its partitions

faust can skip messages around a rebalance or a table recovery. Measured on
the detector's restart (tests/e2e/test_anomalies.py): the routing agent read
``events[0]`` from the committed offset to 1,120, then went on at 1,529; the
408 messages between were never routed, and a month-to-date share that needed
them was never found. The likely path is faust's own: records fetched before
the recovery's seek are cleared from the stream buffers, while the fetcher's
position has moved past them, and its fetch loop drops any message below the
read offset it remembers (``Consumer._drain_messages``).

``OffsetContinuity.check`` runs on each message an agent takes, before the
agent handles it. It expects the next offset after the last one it saw on
that partition, or, first after an assignment, the group's committed offset.
A message past that point means the messages between were skipped: the
process commits nothing more and re-executes in place (``restart_in_place``),
and the fresh process resumes at the committed offset, which cannot have
passed the skipped messages because none of them was acknowledged. A message
before that point (a re-delivery after a seek) is fine: at least once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import faust

from meterline.kafka import policy_for
from meterline.kafka.incarnation import BrokerUnreachable, TopicIncarnations
from meterline.schemas import KafkaSettings

log = logging.getLogger(__name__)


def guard_commits(app: faust.App, kafka: KafkaSettings, source_topics: Iterable[str]) -> None:
    """Register a start-up task on ``app`` that guards its consumer's commits (see above).

    ``source_topics`` are noted at start; a topic first committed later is noted then.
    """
    incarnations = TopicIncarnations(kafka)
    lock = threading.Lock()  # commits may overlap; the checker is not thread-safe
    baseline = list(source_topics)

    def recreated(topics: list[str]) -> list[str]:
        with lock:
            return incarnations.recreated(topics)

    def remember() -> None:
        with lock:
            try:
                incarnations.remember(baseline)
            except BrokerUnreachable as exc:
                log.warning("topic ids not noted at start (%s): noted at the first commit", exc)

    async def guard_consumer_commits() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, remember)
        consumer: Any = app.consumer
        commit = consumer._commit

        async def guarded(offsets: Mapping[Any, int]) -> bool:
            topics = sorted({tp.topic for tp in offsets})
            try:
                changed = await loop.run_in_executor(None, recreated, topics)
            except BrokerUnreachable as exc:
                log.warning("not committing: the broker cannot tell the topics' ids (%s)", exc)
                return False
            if changed:
                restart_in_place(f"re-created topics {', '.join(changed)}")
            result: bool = await commit(offsets)
            return result

        consumer._commit = guarded

    app.task(guard_consumer_commits)


def restart_in_place(reason: str) -> None:
    """Replace this process with a fresh run of the same command (same pid); never returns.

    Nothing is flushed or committed on the way out, on purpose: the positions
    this process holds are the ones that must not be committed.
    """
    log.error("restarting in place, committing nothing: %s", reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


class OffsetContinuity:
    """Per-partition offset check for the agents of one faust app (one event loop)."""

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._last: dict[tuple[str, int], int] = {}
        forget: Any = self._forget  # faust's signal types do not admit a bound method
        app.on_partitions_revoked.connect(forget)

    async def _forget(self, _sender: Any, *args: Any, **_kwargs: Any) -> None:
        # a revoked partition may come back after another worker moved it on: it is
        # judged afresh, against the committed offset faust seeks to on assignment
        revoked: set[Any] = args[0] if args else set()
        for tp in revoked:
            self._last.pop((tp.topic, tp.partition), None)

    def check(self, message: Any) -> None:
        """Restart in place if offsets before ``message`` on its partition were skipped."""
        key = (message.topic, message.partition)
        offset: int = message.offset
        last = self._last.get(key)
        consumer: Any = self._app.consumer
        expected = consumer._committed_offset.get(message.tp) if last is None else last + 1
        self._last[key] = offset
        if expected is not None and offset > expected:
            restart_in_place(f"faust skipped {message.topic}[{message.partition}]@"
                             f"{expected}..{offset - 1}: resuming from the committed offset")


class ContinuityCheck(Protocol):
    """What an agent calls on each message before handling it."""

    def check(self, message: Any) -> None: ...


class NoContinuityCheck:
    """Apache Kafka's: faust's consumer is not seen to skip there, so nothing to check."""

    def check(self, message: Any) -> None:
        return None


def guard_app(app: faust.App, kafka: KafkaSettings, source_topics: Iterable[str]
              ) -> ContinuityCheck:
    """Install the embedded broker's guards on ``app`` when its policy says so (see above).

    Call once per app, before its agents are defined; give every agent the result.
    """
    policy = policy_for(kafka)
    if policy.guard_topic_incarnations:
        guard_commits(app, kafka, source_topics)
    return OffsetContinuity(app) if policy.check_offset_continuity else NoContinuityCheck()

