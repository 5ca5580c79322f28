"""Re-keying events for the detectors: one librdkafka producer, durable per batch.

``Rekeyer.to_team``/``to_provider`` queue a message onto the team-keyed or
the provider-keyed internal topic (about a microsecond each, against tens for
faust's ``Topic.send``: the anomaly path must not slow the enrich agent that
shares the worker's event loop); ``durable()`` returns once the broker holds
everything queued, and raises ``EmitFailed`` otherwise, so the routing agent
crashes without committing and the batch is routed again (at least once).

Any partitioner that maps a key to one partition keeps a team's events, and
so its table partition and changelog partition, together; this one is
librdkafka's ``murmur2_random``, the Java client's.
"""

from __future__ import annotations

from meterline.schemas import KafkaSettings

from ..emit import BatchEmitter


class Rekeyer(BatchEmitter):
    """Queues events onto the by-team and by-provider topics, and dead letters.

    The producer, ``dead_letter``, ``durable`` and ``close`` are ``BatchEmitter``'s
    (same settings, same guarantee); a retried duplicate here is one call counted
    twice by a detector, as after a crash.
    """

    def __init__(self, kafka: KafkaSettings, *, role: str, by_team: str, by_provider: str,
                 dead_letters: str) -> None:
        super().__init__(kafka, role=role)
        self._by_team = by_team
        self._by_provider = by_provider
        self._dead_letters = dead_letters

    def to_team(self, team: str, value: bytes) -> None:
        self._produce(self._by_team, team.encode(), value, None)

    def to_provider(self, provider: str, value: bytes) -> None:
        self._produce(self._by_provider, provider.encode(), value, None)
