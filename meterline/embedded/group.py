"""Join a faust app's consumer group only after a dead predecessor has left it.

The one faust app left is the detectors' (the enrichment worker is a
librdkafka loop, ``processors.worker``, which rejoins without this). Why:
when a faust worker is killed (SIGKILL, OOM, power), its member stays in the
consumer group until its session times out. A new worker that joins inside
that window is assigned partitions, starts fetching, and is then rebalanced a
second time when the dead member expires. faust's fetcher can carry records
fetched in the first generation across that second rebalance; after the seek
to the committed offsets they look like a jump ahead, faust records the span
as a gap and drops the re-read messages in it, and the partition's commit
stalls behind the one message that was never acknowledged. The embedded
broker (tansu) makes the window certain: it keeps a dead member's group
``Stable`` until another member asks to join.

``wait_for_dead_members`` avoids the window (on the embedded broker only: on
Apache Kafka, static membership lets the new worker take the dead member's
place at once, see ``meterline.kafka.clients``): if the group is not empty (a
member holds or held partitions), it waits one session timeout, plus a margin,
before the worker joins. A dead member's session has then lapsed, so the
worker's first join is its only one. A live member (another worker sharing
the partitions) is not affected: the new worker only starts a little later.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import ConsumerGroupState, KafkaException

from meterline.kafka import KafkaClients
from meterline.schemas import KafkaSettings

log = logging.getLogger(__name__)

MARGIN_S = 1.0
_SETTLED = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD}


def group_state(kafka: KafkaSettings, group_id: str, timeout_s: float = 10.0) -> ConsumerGroupState:
    """The group's state as the broker reports it (``UNKNOWN`` if it cannot tell)."""
    admin = KafkaClients(kafka, role="detector").admin()
    try:
        description = admin.describe_consumer_groups([group_id])[group_id].result(timeout_s)
    except KafkaException as exc:
        log.warning("could not describe consumer group %s: %s", group_id, exc)
        return ConsumerGroupState.UNKNOWN
    state: ConsumerGroupState = description.state
    return state


def wait_for_dead_members(kafka: KafkaSettings, group_id: str) -> float:
    """Sleep out a possibly dead member's session if the group has members; seconds waited."""
    state = group_state(kafka, group_id)
    if state in _SETTLED:
        return 0.0
    wait_s = kafka.session_timeout_ms / 1000 + MARGIN_S
    log.info("consumer group %s is %s: waiting %.1f s for a dead member's session to lapse",
             group_id, state.name.lower(), wait_s)
    time.sleep(wait_s)
    return wait_s
