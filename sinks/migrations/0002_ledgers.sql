-- Exactly-once rollups, re-pricing, anomalies and the alert ledger.
-- Every statement is re-runnable; see docs/clickhouse.md for each column.

-- 1. The rollup view counts first pricings only. A request's later versions
--    (re-pricing) reach spend_hourly as delta rows written by
--    sinks.rollups.repair_rollups, never through the view: a view fires per
--    insert and would add the new version on top of the old one.
DROP VIEW IF EXISTS {db}.spend_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.spend_hourly_mv TO {db}.spend_hourly AS
SELECT
    toStartOfHour(received_at) AS hour,
    team, cost_centre, user, key_id, repo, tool, provider,
    served_model AS model, unpriced, attributed,
    count() AS requests,
    countIf(status >= 400) AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_5m_tokens + cache_write_1h_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd
FROM {db}.events
WHERE version = 1
GROUP BY hour, team, cost_centre, user, key_id, repo, tool, provider, model, unpriced, attributed;

-- 2. Recently inserted rows are found fast at start-up, when the store
--    repairs the rollup for the hours its last batches touched.
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS inserted_at_minmax inserted_at
    TYPE minmax GRANULARITY 1;

-- 3. Re-pricing runs: one row per state (running, then done or failed), the
--    later state winning by version.
CREATE TABLE IF NOT EXISTS {db}.reprice_runs
(
    run_id             String,
    version            UInt32,
    range_from         DateTime64(6, 'UTC'),
    range_to           DateTime64(6, 'UTC'),
    started_at         DateTime64(3, 'UTC'),
    finished_at        Nullable(DateTime64(3, 'UTC')),
    state              LowCardinality(String),
    price_book_sha256  String,
    events_examined    UInt64,
    events_repriced    UInt64,
    old_cost_usd       Decimal(38, 12),
    new_cost_usd       Decimal(38, 12),
    rollup_delta_rows  UInt64,
    error              String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY run_id;

-- 4. Anomalies found by the detectors, one row per finding. anomaly_id is
--    derived from (detector, kind, subject, window) so a re-detection
--    replaces the row instead of adding a second one.
CREATE TABLE IF NOT EXISTS {db}.anomalies
(
    anomaly_id         String,
    detected_at        DateTime64(3, 'UTC'),
    detector           LowCardinality(String),
    detector_version   LowCardinality(String),
    kind               LowCardinality(String),
    severity           LowCardinality(String),
    window_start       DateTime('UTC'),
    window_end         DateTime('UTC'),
    team               LowCardinality(String),
    user               LowCardinality(String),
    key_id             LowCardinality(String),
    repo               LowCardinality(String),
    tool               LowCardinality(String),
    provider           LowCardinality(String),
    model              LowCardinality(String),
    observed           Float64,
    expected           Float64,
    threshold          Float64,
    cost_usd           Decimal(38, 12),
    request_ids        Array(String),
    summary            String,
    details            String
)
ENGINE = ReplacingMergeTree(detected_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (kind, team, window_start, anomaly_id)
TTL window_start + INTERVAL {events_ttl_days} DAY;

-- 5. Budget alerts: the exactly-once ledger, one logical row per (team,
--    period, threshold). A sender claims the key (state 'claimed'), sends,
--    then records 'sent' (or 'failed') with a higher version; a key whose
--    latest state is 'sent' is never sent again.
CREATE TABLE IF NOT EXISTS {db}.alerts_sent
(
    team               LowCardinality(String),
    period             String,
    threshold_pct      Decimal(9, 4),
    version            UInt64,
    state              LowCardinality(String),
    period_start       DateTime('UTC'),
    period_end         DateTime('UTC'),
    timezone           LowCardinality(String),
    budget_usd         Decimal(38, 12),
    spend_usd          Decimal(38, 12),
    channel            LowCardinality(String),
    destination        String,
    claimed_by         String,
    claimed_at         DateTime64(3, 'UTC'),
    sent_at            Nullable(DateTime64(3, 'UTC')),
    message_id         String,
    error              String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (team, period, threshold_pct);
