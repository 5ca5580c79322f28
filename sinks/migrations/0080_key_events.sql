-- The key registry's audit trail (issue 19; governance/, docs/governance.md). One row per
-- key event: minted, rotated, revoked, updated (from the registry's compacted topic, with
-- who did it), and expired (written by the store when a key's expiry passes, actor
-- 'system'). state is the key's whole record after the event, as JSON: its hash, never
-- the key. A re-read of the topic writes the same (key_id, version) again; the engine
-- keeps one. Gateways read the latest state of every key from here at start-up.
CREATE TABLE IF NOT EXISTS {db}.key_events
(
    key_id      String,
    version     UInt64,
    at          DateTime64(3, 'UTC'),
    action      LowCardinality(String),
    actor       String,
    reason      String,
    team        LowCardinality(String),
    user        LowCardinality(String),
    name        String,
    state       String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (key_id, version);
