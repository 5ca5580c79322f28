-- The budget-alert ledger: an append-only log of claims and outcomes, one row
-- per step, never updated (reports/alerts_ledger.py holds the protocol).
-- alert_key = scope:subject:period:alert, e.g. team:platform:2026-11:80%.
-- state: claimed (a checker is about to send), sent (Slack took it),
-- failed (delivery gave up; the claim is released), yielded (a claim that
-- lost the race, released at once), superseded (covered by a more severe
-- alert sent in the same message). recorded_at is the server's clock, so
-- claims from different hosts are ordered by one clock.
CREATE TABLE IF NOT EXISTS {db}.budget_alerts
(
    alert_key    String,
    scope        LowCardinality(String),
    subject      String,
    team         LowCardinality(String),
    period       LowCardinality(String),
    alert        LowCardinality(String),
    claimant     String,
    state        LowCardinality(String),
    recorded_at  DateTime64(6, 'UTC') DEFAULT now64(6),
    spend_usd    Decimal(38, 12),
    budget_usd   Decimal(38, 12),
    detail       String
)
ENGINE = MergeTree
ORDER BY (alert_key, recorded_at, claimant);
