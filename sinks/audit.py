"""The audit sink: message scans → ClickHouse ``audit_bodies`` and ``sensitive_findings``.

A ``MessageScan`` (from the processors' scan, ``processors/egress.py``) is one
distinct request message: its findings (kind and place, never the value) and,
if its body policy keeps one, its text (``redacted`` or ``full``). Both
tables are ``ReplacingMergeTree`` keyed by content (migration
``0050_egress.sql``), so a replayed batch rewrites the same keys; readers that
must count exactly use ``FINAL``.

``AuditSink.run`` blocks until ``stop`` is set. Each cycle:

1. consume up to ``store.max_batch_size`` scans or for ``max_batch_time_s``;
2. insert their rows (bodies, then findings), retrying with backoff while
   ClickHouse refuses (nothing is committed meanwhile);
3. commit, per partition, the offset after the last message.

A crash between 2 and 3 re-inserts the batch: harmless, by the keys above.
An unreadable scan is logged with its position and skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from meterline.kafka import TopicSource
from meterline.schemas import Groups, KafkaSettings, MessageScan, Settings, StoreSettings, Topics

from .consumer import store_until_done
from .errors import store_errors

log = logging.getLogger(__name__)

BODY_COLUMNS = ("message_hash", "body_policy", "team", "repo", "role", "first_request_id",
                "first_seen", "expires_at", "chars", "findings", "text")
FINDING_COLUMNS = ("message_hash", "request_id", "at", "team", "user", "repo", "provider",
                   "model", "role", "message_index", "kind", "category", "detector", "start",
                   "end", "excepted")


class AuditWriter:
    """Inserts of scans into ``audit_bodies`` and ``sensitive_findings``."""

    def __init__(self, client: Any, database: str, retention_days: dict[str, int]) -> None:
        self._client = client
        self._bodies = f"{database}.audit_bodies"
        self._findings = f"{database}.sensitive_findings"
        self._retention_days = retention_days

    def write(self, scans: Sequence[MessageScan]) -> int:
        """Store the batch; returns the number of findings written."""
        bodies = [[s.message_hash, s.body_policy, s.team, s.repo, s.role, s.request_id, s.at,
                   s.at + timedelta(days=self._retention_days[s.body_policy]), s.chars,
                   len(s.findings), s.text]
                  for s in scans if s.text is not None and s.body_policy in self._retention_days]
        findings = [[s.message_hash, s.request_id, s.at, s.team, s.user, s.repo, s.provider,
                     s.model, s.role, s.index, f.kind, f.category, f.detector, f.start, f.end,
                     f.excepted]
                    for s in scans for f in s.findings]
        if bodies:
            with store_errors(f"inserting {len(bodies)} audit bodies"):
                self._client.insert(self._bodies, bodies, column_names=list(BODY_COLUMNS))
        if findings:
            with store_errors(f"inserting {len(findings)} sensitive findings"):
                self._client.insert(self._findings, findings, column_names=list(FINDING_COLUMNS))
        return len(findings)


class AuditSink:
    """Consumes the message-scans topic into ClickHouse (see the module docstring)."""

    def __init__(self, kafka: KafkaSettings, store: StoreSettings, writer: AuditWriter) -> None:
        self._writer = writer
        self._source = TopicSource(kafka, store, group_id=Groups(kafka.topic_prefix).audit_sink,
                                   topic=Topics(kafka.topic_prefix).message_scans,
                                   name="audit sink")
        self.findings = 0

    def run(self, stop: threading.Event) -> None:
        self._source.run(stop, self._flush)

    def _flush(self, batch: list[Any], stop: threading.Event) -> None:
        scans = []
        for message in batch:
            try:
                scans.append(MessageScan.model_validate_json(message.value() or b""))
            except ValidationError as exc:
                log.error("skipping unreadable message scan at %s[%d]@%d: %d errors",
                          message.topic(), message.partition(), message.offset(),
                          exc.error_count())
        def store() -> None:
            self.findings += self._writer.write(scans)
        if not store_until_done(store, stop, f"{len(scans)} message scans"):
            return
        self._source.commit(batch)


def run_audit_sink(settings: Settings, stop: threading.Event) -> None:
    """The store process's audit consumer; blocks until ``stop``."""
    from .client import connect

    client = connect(settings.clickhouse)
    writer = AuditWriter(client, settings.clickhouse.database, settings.egress.retention_days)
    AuditSink(settings.kafka, settings.store, writer).run(stop)
