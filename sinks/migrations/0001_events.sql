-- One row per request id: the ledger every figure is computed from.
-- ReplacingMergeTree(version) keeps the latest pricing of a request; the sink
-- also refuses ids already present, so the rollups fed below see each id once.
CREATE TABLE IF NOT EXISTS {db}.events
(
    request_id            String,
    version               UInt32,
    schema_version        LowCardinality(String),
    received_at           DateTime64(6, 'UTC'),
    first_byte_at         Nullable(DateTime64(6, 'UTC')),
    done_at               DateTime64(6, 'UTC'),
    surface               LowCardinality(String),
    provider              LowCardinality(String),
    requested_model       LowCardinality(String),
    served_model          LowCardinality(String),
    key_id                LowCardinality(String),
    user                  LowCardinality(String),
    team                  LowCardinality(String),
    cost_centre           LowCardinality(String),
    repo                  LowCardinality(String),
    repo_source           LowCardinality(String),
    tool                  LowCardinality(String),
    user_agent            String,
    status                UInt16,
    outcome               LowCardinality(String),
    error_class           LowCardinality(String),
    stream                Bool,
    input_tokens          UInt64,
    output_tokens         UInt64,
    cache_read_tokens     UInt64,
    cache_write_5m_tokens UInt64,
    cache_write_1h_tokens UInt64,
    reasoning_tokens      UInt64,
    usage_source          LowCardinality(String),
    upstream_ms           Float64,
    gateway_ms            Float64,
    request_bytes         UInt64,
    response_bytes        UInt64,
    body_policy           LowCardinality(String),
    request_sha256        String,
    response_sha256       String,
    input_cost_usd        Decimal(38, 12),
    output_cost_usd       Decimal(38, 12),
    cost_usd              Decimal(38, 12),
    price_source          LowCardinality(String),
    unit_prices           String,
    price_version         LowCardinality(String),
    price_model           LowCardinality(String),
    unpriced              Bool,
    attributed            Bool,
    pii_found             Bool,
    policy_breach         Bool,
    inserted_at           DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(received_at)
-- request ids are UUIDv7: ordering by id is ordering by arrival, and the
-- sink's duplicate check is a primary-key lookup.
ORDER BY request_id
TTL toDateTime(received_at) + INTERVAL {events_ttl_days} DAY;

-- Hourly spend by every attribution dimension. Hours (UTC) let reports cut
-- days and months in any whole-hour time zone. Fed only through the sink's
-- deduplicated inserts and re-pricing deltas, never by raw re-inserts.
CREATE TABLE IF NOT EXISTS {db}.spend_hourly
(
    hour                  DateTime('UTC'),
    team                  LowCardinality(String),
    cost_centre           LowCardinality(String),
    user                  LowCardinality(String),
    key_id                LowCardinality(String),
    repo                  LowCardinality(String),
    tool                  LowCardinality(String),
    provider              LowCardinality(String),
    model                 LowCardinality(String),
    unpriced              Bool,
    attributed            Bool,
    requests              Int64,
    errors                Int64,
    input_tokens          Int64,
    output_tokens         Int64,
    cache_read_tokens     Int64,
    cache_write_tokens    Int64,
    reasoning_tokens      Int64,
    cost_usd              Decimal(38, 12)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, team, user, key_id, repo, tool, provider, model, unpriced, attributed, cost_centre);

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
GROUP BY hour, team, cost_centre, user, key_id, repo, tool, provider, model, unpriced, attributed;
