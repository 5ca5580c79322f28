"""The report-run ledger: every run of a report, in ClickHouse (``report_runs``).

A run is written twice: ``start`` when it begins (status ``running``) and
``finish`` when it ends (``succeeded`` or ``failed``, with its total, request
count, files or error). The table is a ReplacingMergeTree on ``version``, so
reads with ``FINAL`` see each run's last state; a run whose process died stays
``running`` with no finish time, which is what happened. Writes go straight
to the table, so the ledger needs a writable client, not the read-only one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from meterline.sinks.errors import store_errors

from .chargeback_query import exact

RunStatus = Literal["running", "succeeded", "failed"]
_COLUMNS = ["run_id", "report", "period", "version", "started_at", "finished_at", "status",
            "total_usd", "requests", "files", "error"]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run in one state; ``finished_at`` is None while it is ``running``."""

    run_id: str
    report: str
    period: str
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    total_usd: Decimal
    requests: int
    files: list[str]
    error: str


class RunLedger:
    """Records report runs in ``<database>.report_runs``."""

    def __init__(self, client: Any, database: str) -> None:
        self._client = client
        self._table = f"{database}.report_runs"

    def _write(self, record: RunRecord, version: int) -> None:
        with store_errors(f"recording report run {record.run_id}"):
            self._client.insert(self._table, [[
                record.run_id, record.report, record.period, version, record.started_at,
                record.finished_at, record.status, record.total_usd, record.requests,
                record.files, record.error]], column_names=_COLUMNS)

    def start(self, run_id: str, report: str, period: str, started_at: datetime) -> RunRecord:
        record = RunRecord(run_id, report, period, started_at, None, "running", Decimal(0), 0, [],
                           "")
        self._write(record, 1)
        return record

    def finish(self, record: RunRecord, *, finished_at: datetime, status: RunStatus,
               total_usd: Decimal = Decimal(0), requests: int = 0,
               files: list[str] | None = None, error: str = "") -> RunRecord:
        done = RunRecord(record.run_id, record.report, record.period, record.started_at,
                         finished_at, status, total_usd, requests, files or [], error)
        self._write(done, 2)
        return done

    def runs(self, report: str, period: str | None = None) -> list[RunRecord]:
        """Runs of ``report`` (optionally one period), oldest first, each in its last state."""
        where = "report = {report:String}" + (" AND period = {period:String}" if period else "")
        with store_errors("reading the report-run ledger"):
            rows = self._client.query(
                f"SELECT run_id, report, period, started_at, finished_at, status, total_usd, "
                f"requests, files, error FROM {self._table} FINAL WHERE {where} "
                f"ORDER BY started_at, run_id",
                parameters={"report": report, "period": period or ""}).result_rows
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], r[5], exact(r[6]), int(r[7]), list(r[8]),
                          r[9]) for r in rows]
