-- The report-run ledger: one row per state of a run (running, then succeeded
-- or failed), the later state winning by version. A run that never finished
-- (the process died) stays visible as 'running' with no finished_at.
-- Re-running a period adds a new run_id; the latest succeeded run of a
-- (report, period) is the one whose files are on disk.
CREATE TABLE IF NOT EXISTS {db}.report_runs
(
    run_id        String,
    report        LowCardinality(String),
    period        String,
    version       UInt32,
    started_at    DateTime64(3, 'UTC'),
    finished_at   Nullable(DateTime64(3, 'UTC')),
    status        LowCardinality(String),
    total_usd     Decimal(38, 12),
    requests      UInt64,
    files         Array(String),
    error         String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (report, period, run_id);
