-- Service tiers (issue 21): the tier a provider says a call ran at, which it prices
-- apart (OpenAI's flex at half the default rate, priority at 1.7 times it). Empty for
-- the default tier, and for every row stored before this column existed.
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS service_tier LowCardinality(String) DEFAULT '' AFTER usage_source;
