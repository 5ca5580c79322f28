-- Fallback over an alias's targets (issue 20, docs/routing.md). `attempts` is the JSON
-- array of the targets tried before the one that served (provider, model, status,
-- error_class, upstream_ms), `fallbacks` how many there were. Failed attempts are never
-- billed, so cost_usd stays the serving target's. Rows stored before this column
-- existed, and envelopes older than 1.3, read as no fallback.
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS attempts String DEFAULT '[]' AFTER request_messages,
    ADD COLUMN IF NOT EXISTS fallbacks UInt8 DEFAULT 0 AFTER attempts;
