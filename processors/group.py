"""Join the processors' consumer group only after a dead predecessor has left it.

Why: when a worker is killed (SIGKILL, OOM, power), its member stays in the
consumer group until its session times out. A new worker that joins inside
that window is assigned partitions, starts fetching, and is then rebalanced a
second time when the dead member expires. faust's fetcher can carry records
fetched in the first generation across that second rebalance; after the seek
to the committed offsets they look like a jump ahead, faust records the span
as a gap and drops the re-read messages in it, and the partition's commit
stalls behind the one message that was never acknowledged. The embedded
broker (tansu) makes the window certain: it keeps a dead member's group
``Stable`` until another member asks to join.

``wait_for_dead_members`` avoids the window in two steps:

1. If the group is not empty (a member holds or held partitions), wait one
   session timeout plus a margin: a dead member's session has then lapsed.
   Apache Kafka expires it by itself, and the group is ``Empty`` now.
2. If the group is still not empty, either live members share it or the
   broker (tansu) waits for a join to notice the lapse. A short probe member
   joins and leaves the group with librdkafka: the join expires lapsed
   members, the leave hands back their partitions, and the group is ``Empty``
   unless live members remain. Then the worker's first join is its only one.

A live member (another worker sharing the partitions) sees two extra
rebalances at most, and the new worker starts a little later.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from meterline.schemas import KafkaSettings

log = logging.getLogger(__name__)

MARGIN_S = 1.0
PROBE_JOIN_TIMEOUT_S = 60.0
_SETTLED = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD}


def group_state(kafka: KafkaSettings, group_id: str, timeout_s: float = 10.0) -> ConsumerGroupState:
    """The group's state as the broker reports it (``UNKNOWN`` if it cannot tell)."""
    admin = AdminClient({**kafka.as_librdkafka(), "log_level": 3})
    try:
        description = admin.describe_consumer_groups([group_id])[group_id].result(timeout_s)
    except KafkaException as exc:
        log.warning("could not describe consumer group %s: %s", group_id, exc)
        return ConsumerGroupState.UNKNOWN
    state: ConsumerGroupState = description.state
    return state


def wait_for_dead_members(kafka: KafkaSettings, group_id: str, topic: str) -> float:
    """Wait until dead members have left ``group_id`` (see the module docstring); seconds waited.

    ``topic`` is one topic the group consumes: the probe member subscribes to it.
    """
    started = time.monotonic()
    state = group_state(kafka, group_id)
    if state in _SETTLED:
        return 0.0
    wait_s = kafka.session_timeout_ms / 1000 + MARGIN_S
    log.info("consumer group %s is %s: waiting %.1f s for a dead member's session to lapse",
             group_id, state.name.lower(), wait_s)
    time.sleep(wait_s)
    state = group_state(kafka, group_id)
    if state not in _SETTLED:
        joined = _probe_join(kafka, group_id, topic)
        state = group_state(kafka, group_id)
        log.info("consumer group %s is %s after a probe member %s and left", group_id,
                 state.name.lower(), "joined" if joined else "tried to join")
    return time.monotonic() - started


def _probe_join(kafka: KafkaSettings, group_id: str, topic: str) -> bool:
    """Join ``group_id`` until assigned (or a timeout), commit nothing, leave cleanly;
    whether the probe was assigned partitions."""
    probe = Consumer({**kafka.as_librdkafka(), "group.id": group_id, "enable.auto.commit": False,
                      "session.timeout.ms": kafka.session_timeout_ms, "log_level": 3})
    try:
        probe.subscribe([topic])
        deadline = time.monotonic() + PROBE_JOIN_TIMEOUT_S
        while time.monotonic() < deadline:
            message = probe.poll(1.0)  # drives the join; a record polled here is never committed
            if message is not None and message.error():
                log.info("probe member of %s: %s", group_id, message.error())
            if probe.assignment():
                return True
            state = group_state(kafka, group_id)
            log.info("probe member of %s: group %s", group_id, state.name.lower())
            if state in _SETTLED:
                return False
        return False
    finally:
        probe.close()  # LeaveGroup: the group is Empty unless live members remain
