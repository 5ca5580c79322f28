"""Topic names and message keys: the wire contract between the stages.

Every stage imports names from here, never spells them itself, so a rename is
one edit. Keys decide co-location: envelopes are keyed by virtual key id (all
calls of one key, and any replayed duplicates, land on one partition in order);
events are keyed by request id, so the sink can deduplicate on the key alone
without parsing the value.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names for one deployment, derived from a prefix."""

    prefix: str = "meterline"

    @property
    def envelopes(self) -> str:
        return f"{self.prefix}.envelopes.v1"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events.v1"

    @property
    def anomalies(self) -> str:
        return f"{self.prefix}.anomalies.v1"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.deadletter.v1"

    @property
    def sink_watermarks(self) -> str:
        """Confirmed-durable positions published by the sink (see ingest spool)."""
        return f"{self.prefix}.watermarks.v1"

    @property
    def audit_messages(self) -> str:
        """Distinct request messages, text sealed, gateway → scan (keyed by message hash)."""
        return f"{self.prefix}.audit-messages.v1"

    @property
    def message_scans(self) -> str:
        """Scanned messages: findings and policy-kept text, scan → store (keyed by hash)."""
        return f"{self.prefix}.message-scans.v1"

    @property
    def anomaly_by_team(self) -> str:
        """The detectors' internal re-keying of events by team (their faust app owns it)."""
        return f"{self.prefix}.anomaly-by-team.v1"

    @property
    def anomaly_by_provider(self) -> str:
        """The detectors' internal re-keying of per-minute provider tallies."""
        return f"{self.prefix}.anomaly-by-provider.v1"

    @property
    def keys(self) -> str:
        """The key registry: every key's latest state, keyed by key id (compacted, one partition)."""
        return f"{self.prefix}.keys.v1"

    def all(self) -> tuple[str, ...]:
        """The topics ``meterline init`` and ``up`` create with ``kafka.partitions``
        (faust creates its internal ones; ``keys`` is created apart, see ``registry_topic``)."""
        return (self.envelopes, self.events, self.anomalies, self.dead_letters, self.sink_watermarks,
                self.audit_messages, self.message_scans)

    @property
    def registry_topic(self) -> tuple[str, dict[str, str]]:
        """The key registry's topic and its config: compacted, so it holds each key's latest
        state however many changes it has seen; one partition keeps every key's events in order."""
        return self.keys, {"cleanup.policy": "compact"}


@dataclass(frozen=True, slots=True)
class Groups:
    """The consumer group ids for one deployment, derived from the same prefix as the topics.

    Scoped by the prefix: deployments (and tests) that share a broker must not
    share consumer groups. The faust apps' ids are their group ids, and name
    their tables' changelog topics too.
    """

    prefix: str = "meterline"

    @property
    def processors(self) -> str:
        """The enrichment worker's faust app (envelopes → events)."""
        return f"{self.prefix}-processors"

    @property
    def detectors(self) -> str:
        """The anomaly detectors' faust app (events → anomalies, message scans)."""
        return f"{self.prefix}-detectors"

    @property
    def event_sink(self) -> str:
        return f"{self.prefix}-sink"

    @property
    def anomaly_sink(self) -> str:
        return f"{self.prefix}-anomaly-sink"

    @property
    def audit_sink(self) -> str:
        return f"{self.prefix}-audit-sink"

    @property
    def key_sink(self) -> str:
        """The store's reader of key events into the ``key_events`` audit table."""
        return f"{self.prefix}-key-sink"

    def confirmations_reader(self, instance: str) -> str:
        """One per gateway process; never commits (librdkafka wants a group even to assign)."""
        return f"{self.prefix}-gateway-{instance}"


#: Header carrying the schema version of a message value, read before parsing.
SCHEMA_VERSION_HEADER = "meterline-schema-version"
#: Header set on dead letters: why the message was rejected.
DEAD_LETTER_REASON_HEADER = "meterline-dead-letter-reason"
#: Header set on dead letters: the topic[partition]@offset it came from.
DEAD_LETTER_SOURCE_HEADER = "meterline-dead-letter-source"
