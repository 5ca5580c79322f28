"""The anomalies sink: anomalies topic → ClickHouse ``anomalies``, each id stored once.

``AnomalyWriter.write`` stores a batch of ``Anomaly`` findings and returns the
ones that were new: ids repeated in the batch, or already in the table, are
dropped first (a replayed detection, a restarted worker), so each finding is
one row. The table (migration ``0002_ledgers.sql``, issue 5) has columns per
attribution dimension; a finding fills the one its entity names (``user``,
``key_id``, ``model``...) and the others it knows from its evidence, and
keeps ``entity_kind``, ``entity``, ``unit`` and the evidence as JSON in
``details``.

``AnomalySink.run`` blocks until ``stop`` is set. Each cycle:

1. consume up to ``max_batch_size`` messages or for ``max_batch_time_s``;
2. store them (``AnomalyWriter``), retrying with backoff while ClickHouse
   refuses (nothing is committed meanwhile);
3. hand the whole batch to ``on_stored`` (the notifier), which is itself
   idempotent per anomaly id, and wait for it (a ``StoreUnavailable`` from it
   is retried like the write);
4. commit, per partition, the offset after the last message.

A crash between 2 and 4 consumes the batch again: step 2 stores nothing
new, step 3 skips what it already notified. A message that is not a readable
anomaly of a supported major version is logged with its position and skipped.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from meterline.kafka import TopicSource
from meterline.schemas import (
    Anomaly,
    Groups,
    KafkaSettings,
    StoreSettings,
    Topics,
    UnsupportedSchemaVersion,
    check_schema_version,
)

from .consumer import store_until_done
from .errors import store_errors

log = logging.getLogger(__name__)

DETECTOR_VERSION = "1"
_DETECTORS = {"spend_spike": "rate_spike", "request_spike": "rate_spike",
              "spend_ceiling": "hourly_ceiling", "request_ceiling": "hourly_ceiling",
              "budget_share": "budget_share", "dormant_key": "novelty", "new_model": "novelty",
              "new_tool": "novelty", "unpriced_model": "novelty", "error_burst": "error_burst",
              "policy_breach": "egress_policy", "sensitive_data": "egress_policy"}
_ENTITY_COLUMNS = {"user": "user", "key": "key_id", "tool": "tool", "provider": "provider",
                   "model": "model"}
COLUMNS = ("anomaly_id", "detected_at", "detector", "detector_version", "kind", "severity",
           "window_start", "window_end", "team", "user", "key_id", "repo", "tool", "provider",
           "model", "observed", "expected", "threshold", "cost_usd", "request_ids", "summary",
           "details")


def anomaly_row(anomaly: Anomaly) -> list[Any]:
    """The ``anomalies`` row of one finding, in ``COLUMNS`` order."""
    evidence = anomaly.evidence
    dims = {column: str(evidence.get(name, "")) for name, column in
            (("user", "user"), ("key_id", "key_id"), ("tool", "tool"),
             ("provider", "provider"), ("model", "model"))}
    column = _ENTITY_COLUMNS.get(anomaly.entity_kind)
    if column is not None:
        dims[column] = anomaly.entity
    cost = Decimal(str(round(anomaly.observed, 6))) if anomaly.unit == "usd" else Decimal(0)
    request_id = evidence.get("request_id")
    details = json.dumps({"entity_kind": anomaly.entity_kind, "entity": anomaly.entity,
                          "unit": anomaly.unit, "schema_version": anomaly.schema_version,
                          "evidence": evidence}, sort_keys=True)
    return [anomaly.anomaly_id, anomaly.detected_at, _DETECTORS[anomaly.kind], DETECTOR_VERSION,
            anomaly.kind, anomaly.severity, anomaly.window_start, anomaly.window_end,
            anomaly.team, dims["user"], dims["key_id"], str(evidence.get("repo", "")),
            dims["tool"], dims["provider"], dims["model"], anomaly.observed, anomaly.expected,
            anomaly.threshold, cost,
            [str(request_id)] if request_id else [], anomaly.summary, details]


class AnomalyWriter:
    """Idempotent inserts into ``anomalies``. One writer per table (the store process)."""

    def __init__(self, client: Any, database: str) -> None:
        self._client = client
        self._table = f"{database}.anomalies"

    def existing(self, anomaly_ids: Sequence[str]) -> set[str]:
        if not anomaly_ids:
            return set()
        with store_errors("looking up stored anomaly ids"):
            result = self._client.query(
                f"SELECT DISTINCT anomaly_id FROM {self._table} "
                "WHERE anomaly_id IN {ids:Array(String)}",
                parameters={"ids": list(anomaly_ids)})
        return {row[0] for row in result.result_rows}

    def write(self, anomalies: Sequence[Anomaly]) -> list[Anomaly]:
        """Store the batch idempotently; returns the findings that were new."""
        unique: dict[str, Anomaly] = {}
        for anomaly in anomalies:
            unique.setdefault(anomaly.anomaly_id, anomaly)
        for anomaly_id in self.existing(list(unique)):
            del unique[anomaly_id]
        if unique:
            with store_errors(f"inserting {len(unique)} anomalies"):
                self._client.insert(self._table, [anomaly_row(a) for a in unique.values()],
                                    column_names=list(COLUMNS))
        return list(unique.values())


def parse_anomaly(value: bytes | None) -> Anomaly | None:
    """The finding in a message value, or None (logged by the caller) if unreadable."""
    if not value:
        return None
    try:
        anomaly = Anomaly.model_validate_json(value)
        check_schema_version(anomaly.schema_version)
    except (ValidationError, UnsupportedSchemaVersion):
        return None
    return anomaly


class AnomalySink:
    """Consumes the anomalies topic into ClickHouse, then hands each batch to ``on_stored``."""

    def __init__(self, kafka: KafkaSettings, store: StoreSettings, writer: AnomalyWriter, *,
                 on_stored: Callable[[list[Anomaly]], None] | None = None,
                 group_id: str = "") -> None:
        self._writer = writer
        self._on_stored = on_stored
        self.stored = 0
        self.ready = threading.Event()
        # scoped by the prefix like every group (it was not: two deployments shared it)
        self._source = TopicSource(kafka, store,
                                   group_id=group_id or Groups(kafka.topic_prefix).anomaly_sink,
                                   topic=Topics(kafka.topic_prefix).anomalies, name="anomaly sink",
                                   on_assign=lambda _: self.ready.set())

    def run(self, stop: threading.Event) -> None:
        self._source.run(stop, self._flush)

    def _flush(self, batch: list[Any], stop: threading.Event) -> None:
        anomalies = []
        for message in batch:
            anomaly = parse_anomaly(message.value())
            if anomaly is None:
                log.error("skipping unreadable anomaly at %s[%d]@%d", message.topic(),
                          message.partition(), message.offset())
                continue
            anomalies.append(anomaly)
        def store() -> None:
            self.stored += len(self._writer.write(anomalies))
            # the notifier keeps its ledger in the same store: retried with the write
            if self._on_stored is not None and anomalies:
                self._on_stored(anomalies)
        if not store_until_done(store, stop, f"{len(anomalies)} anomalies"):
            return
        self._source.commit(batch)
