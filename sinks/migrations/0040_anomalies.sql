-- Anomaly notifications: the notifier's ledger (reports/anomaly_notify.py), one
-- row per decision about one finding on one channel, append-only. The findings
-- themselves are in `anomalies` (0002_ledgers.sql).
-- channel: team | operator. entity = entity_kind:entity.
-- state: sent (Slack took it), failed (delivery gave up), suppressed (a finding
-- of the same team, kind and entity was sent within the cooldown), stale (too
-- old when it reached the notifier, e.g. a replayed month), no_destination.
CREATE TABLE IF NOT EXISTS {db}.anomaly_notifications
(
    anomaly_id    String,
    channel       LowCardinality(String),
    team          LowCardinality(String),
    kind          LowCardinality(String),
    entity        String,
    window_start  DateTime('UTC'),
    state         LowCardinality(String),
    recorded_at   DateTime64(6, 'UTC') DEFAULT now64(6),
    detail        String
)
ENGINE = MergeTree
ORDER BY (team, kind, entity, channel, window_start, anomaly_id);
