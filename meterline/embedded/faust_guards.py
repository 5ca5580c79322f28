"""The embedded broker's commit guard for faust apps, on only with ``kafka.embedded``.

``guard_app(app, kafka, topics)`` is what a faust app calls once: with the
embedded broker's policy (``meterline.kafka.quirks``) it installs the guard
below; against Apache Kafka it installs nothing. The guard wraps a private
member of faust's consumer (``Consumer._commit``), which is one reason it
runs only where it is needed. ``restart_in_place`` also serves
``processors/continuity.py``.

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

The other faust guard, the per-message offset continuity check, runs on
every broker (faust skipped offsets on Apache Kafka too): ``processors/continuity.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

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


def guard_app(app: faust.App, kafka: KafkaSettings, source_topics: Iterable[str]) -> None:
    """Install the embedded broker's commit guard on ``app`` when its policy says so.

    Call once per app, before its agents are defined.
    """
    if policy_for(kafka).guard_topic_incarnations:
        guard_commits(app, kafka, source_topics)
