-- Egress policy (issue 12). Events gain the rules each call broke and the
-- content addresses of its request messages, so a finding on a message leads
-- to every call that sent it: has(request_messages, message_hash).
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS policy_rules Array(LowCardinality(String)) AFTER policy_breach,
    ADD COLUMN IF NOT EXISTS policy_detail String AFTER policy_rules,
    ADD COLUMN IF NOT EXISTS request_messages Array(String) AFTER policy_detail;

-- Each distinct request message, once, as its body policy keeps it: `redacted`
-- (findings replaced by [REDACTED:kind]) or `full`. Coding agents resend the
-- whole conversation every turn: stored by content address, a conversation
-- costs its distinct messages, not turns x context. Rows expire at
-- expires_at (first_seen + egress.retention_days of the policy).
CREATE TABLE IF NOT EXISTS {db}.audit_bodies
(
    message_hash      String,
    body_policy       LowCardinality(String),
    team              LowCardinality(String),
    repo              LowCardinality(String),
    role              LowCardinality(String),
    first_request_id  String,
    first_seen        DateTime64(6, 'UTC'),
    expires_at        DateTime('UTC'),
    chars             UInt32,
    findings          UInt16,
    text              String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
ORDER BY message_hash
TTL expires_at;

-- What the scan found in each distinct message: kind and place, never the value.
-- A replayed scan rewrites the same (message_hash, kind, start) key.
CREATE TABLE IF NOT EXISTS {db}.sensitive_findings
(
    message_hash      String,
    request_id        String,
    at                DateTime64(6, 'UTC'),
    team              LowCardinality(String),
    user              LowCardinality(String),
    repo              LowCardinality(String),
    provider          LowCardinality(String),
    model             LowCardinality(String),
    role              LowCardinality(String),
    message_index     UInt32,
    kind              LowCardinality(String),
    category          LowCardinality(String),
    detector          LowCardinality(String),
    start             UInt32,
    end               UInt32,
    excepted          Bool
)
ENGINE = ReplacingMergeTree
ORDER BY (message_hash, kind, start)
TTL toDateTime(at) + INTERVAL {events_ttl_days} DAY;
