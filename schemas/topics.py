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

    def all(self) -> tuple[str, ...]:
        return (self.envelopes, self.events, self.anomalies, self.dead_letters, self.sink_watermarks,
                self.audit_messages, self.message_scans)


#: Header carrying the schema version of a message value, read before parsing.
SCHEMA_VERSION_HEADER = "meterline-schema-version"
#: Header set on dead letters: why the message was rejected.
DEAD_LETTER_REASON_HEADER = "meterline-dead-letter-reason"
#: Header set on dead letters: the topic[partition]@offset it came from.
DEAD_LETTER_SOURCE_HEADER = "meterline-dead-letter-source"
