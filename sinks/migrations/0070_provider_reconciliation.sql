-- The ledger checked against the providers' own usage and cost reports (issue 21;
-- reports/reconcile_providers.py). One row per (UTC day, provider, model, finding):
--   finding 'ledger'    the gateway's own provider keys: the ledger's tokens and cost
--                       beside what the provider reports for those keys;
--   finding 'unmetered' usage the provider reports under a key the gateway does not
--                       hold: spend that bypassed the gateway, one row per key.
-- A later check of the same day replaces the row (version = checked_at); every row
-- keeps the run that wrote it. Costs are exact Decimals, as in events.
CREATE TABLE IF NOT EXISTS {db}.provider_reconciliation
(
    day                       Date,
    provider                  LowCardinality(String),
    model                     LowCardinality(String),
    finding                   LowCardinality(String),
    api_key_id                String,
    scope                     String,
    run_id                    String,
    checked_at                DateTime64(3, 'UTC'),
    ledger_input_tokens       UInt64,
    ledger_cache_read_tokens  UInt64,
    ledger_cache_write_tokens UInt64,
    ledger_output_tokens      UInt64,
    ledger_cost_usd           Decimal(38, 12),
    provider_input_tokens       UInt64,
    provider_cache_read_tokens  UInt64,
    provider_cache_write_tokens UInt64,
    provider_output_tokens      UInt64,
    provider_cost_usd           Decimal(38, 12),
    difference_usd            Decimal(38, 12),
    over_tolerance            Bool,
    alerted                   Bool
)
ENGINE = ReplacingMergeTree(checked_at)
ORDER BY (day, provider, model, finding, api_key_id);
