-- Routing rules (issue 20, docs/routing.md). An enforce rule that moved a call to a
-- cheaper target records its name in routing_rule, where the requested model would have
-- gone (counterfactual_provider, counterfactual_model) and what the same usage costs
-- there (counterfactual_cost_usd). A call no enforce rule moved leaves the column out:
-- it defaults to cost_usd, as do the rows stored before this migration, so
-- counterfactual_cost_usd - cost_usd is the saving on every row. A shadow rule only
-- records what it would have done: its name, target and the target's cost for the
-- same usage (shadow_cost_usd, 0 without one). routing_mode is 'enforce', 'shadow'
-- (only a shadow rule matched) or ''.
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS counterfactual_cost_usd Decimal(38, 12) DEFAULT cost_usd AFTER fallbacks,
    ADD COLUMN IF NOT EXISTS routing_rule LowCardinality(String) DEFAULT '' AFTER counterfactual_cost_usd,
    ADD COLUMN IF NOT EXISTS routing_mode LowCardinality(String) DEFAULT '' AFTER routing_rule,
    ADD COLUMN IF NOT EXISTS counterfactual_provider LowCardinality(String) DEFAULT '' AFTER routing_mode,
    ADD COLUMN IF NOT EXISTS counterfactual_model LowCardinality(String) DEFAULT '' AFTER counterfactual_provider,
    ADD COLUMN IF NOT EXISTS shadow_rule LowCardinality(String) DEFAULT '' AFTER counterfactual_model,
    ADD COLUMN IF NOT EXISTS shadow_provider LowCardinality(String) DEFAULT '' AFTER shadow_rule,
    ADD COLUMN IF NOT EXISTS shadow_model LowCardinality(String) DEFAULT '' AFTER shadow_provider,
    ADD COLUMN IF NOT EXISTS shadow_cost_usd Decimal(38, 12) DEFAULT 0 AFTER shadow_model;
