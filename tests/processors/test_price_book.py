"""Golden pricing: each case checked against figures computed by hand from list prices.

List prices used (USD per million tokens, genai-prices snapshot):
- claude-sonnet-4-5: input 3, output 15, cache read 0.30, cache write 5m 3.75,
  cache write 1h 6; above 200k input tokens every token costs double
  (6 / 22.5 / 0.60 / 7.50 / 12): a cliff tier on total input incl. cache.
- gpt-5: input 1.25, cached input 0.125, output 10 (reasoning is output).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest

from meterline.processors import PriceBook
from meterline.processors.public_prices import PublicPrices, genai_counts
from meterline.schemas import PriceOverride, Usage

AT = datetime(2026, 11, 10, 14, 30, tzinfo=UTC)
KINDS = {"anthropic": "anthropic", "openai": "openai", "local": "openai_compatible"}


def book(*overrides: PriceOverride) -> PriceBook:
    return PriceBook(list(overrides), KINDS)  # type: ignore[arg-type]


def test_anthropic_call_with_cache_read_and_1h_cache_write() -> None:
    usage = Usage(input_tokens=1_000, cache_read_tokens=20_000, cache_write_1h_tokens=5_000,
                  output_tokens=800, source="provider")
    quote = book().quote("anthropic", "claude-sonnet-4-5", usage, AT)
    assert quote is not None
    # input: 1,000 x 3 + 20,000 x 0.30 + 5,000 x 6 = 39,000 µ$ ; output: 800 x 15 = 12,000 µ$
    assert quote.input_cost_usd == Decimal("0.039")
    assert quote.output_cost_usd == Decimal("0.012")
    assert quote.cost_usd == Decimal("0.051")
    assert (quote.source, quote.price_model) == ("genai-prices", "anthropic/claude-sonnet-4-5")
    assert quote.version.startswith("genai-prices:")


def test_anthropic_5m_and_1h_cache_writes_are_priced_apart() -> None:
    usage = Usage(input_tokens=0, cache_write_5m_tokens=10_000, cache_write_1h_tokens=10_000,
                  output_tokens=0, source="provider")
    quote = book().quote("anthropic", "claude-sonnet-4-5", usage, AT)
    assert quote is not None
    assert quote.input_cost_usd == Decimal("0.0975")  # 10,000 x 3.75 + 10,000 x 6


def test_openai_call_with_reasoning_and_cached_tokens() -> None:
    usage = Usage(input_tokens=3_000, cache_read_tokens=7_000, output_tokens=2_500,
                  reasoning_tokens=1_800, source="provider")
    quote = book().quote("openai", "gpt-5", usage, AT)
    assert quote is not None
    # input: 3,000 x 1.25 + 7,000 x 0.125 = 4,625 µ$ ; output: 2,500 x 10 = 25,000 µ$
    # (the 1,800 reasoning tokens are inside the 2,500 output tokens: never priced twice)
    assert quote.input_cost_usd == Decimal("0.004625")
    assert quote.output_cost_usd == Decimal("0.025")
    assert quote.cost_usd == Decimal("0.029625")


def test_tiered_long_context_call_prices_every_token_at_the_tier() -> None:
    long = Usage(input_tokens=150_000, cache_read_tokens=100_000, output_tokens=1_000,
                 source="provider")
    quote = book().quote("anthropic", "claude-sonnet-4-5", long, AT)
    assert quote is not None
    # 250,000 input tokens in all > 200,000: input 150,000 x 6 + 100,000 x 0.60, output x 22.5
    assert quote.input_cost_usd == Decimal("0.96")
    assert quote.output_cost_usd == Decimal("0.0225")
    short = Usage(input_tokens=150_000, cache_read_tokens=50_000, output_tokens=1_000,
                  source="provider")  # exactly 200,000: not above the threshold, base prices
    quote = book().quote("anthropic", "claude-sonnet-4-5", short, AT)
    assert quote is not None
    assert quote.input_cost_usd == Decimal("0.465")  # 150,000 x 3 + 50,000 x 0.30
    assert quote.output_cost_usd == Decimal("0.015")


def test_negotiated_discount_applies_from_its_effective_date() -> None:
    discounted = book(PriceOverride(model="claude-sonnet-4-5", provider="anthropic",
                                    effective_from="2026-11-01", input_per_mtok=Decimal(0),
                                    output_per_mtok=Decimal(0), discount_factor=Decimal("0.8")))
    usage = Usage(input_tokens=1_000, cache_read_tokens=20_000, cache_write_1h_tokens=5_000,
                  output_tokens=800, source="provider")
    quote = discounted.quote("anthropic", "claude-sonnet-4-5", usage, AT)
    assert quote is not None
    assert (quote.input_cost_usd, quote.output_cost_usd) == (Decimal("0.0312"), Decimal("0.0096"))
    assert quote.source == "override"
    assert quote.version.startswith("config:2026-11-01+genai-prices:")
    before = discounted.quote("anthropic", "claude-sonnet-4-5", usage,
                              datetime(2026, 10, 31, 23, 59, tzinfo=UTC))
    assert before is not None
    assert before.cost_usd == Decimal("0.051") and before.source == "genai-prices"


def test_dated_fixed_prices_pick_the_one_in_force() -> None:
    prices = book(
        PriceOverride(model="llama-3.3-70b", effective_from="2026-01-01",
                      input_per_mtok=Decimal("0.20"), output_per_mtok=Decimal("0.60")),
        PriceOverride(model="llama-3.3-70b", effective_from="2026-11-01",
                      input_per_mtok=Decimal("0.10"), output_per_mtok=Decimal("0.30"),
                      cache_read_per_mtok=Decimal("0.01")))
    usage = Usage(input_tokens=1_000_000, cache_read_tokens=1_000_000, output_tokens=500_000,
                  source="provider")
    october = prices.quote("local", "llama-3.3-70b", usage, datetime(2026, 10, 15, tzinfo=UTC))
    november = prices.quote("local", "llama-3.3-70b", usage, AT)
    assert october is not None and november is not None
    assert october.cost_usd == Decimal("0.70")  # 2M x 0.20 (cache read at input) + 0.5M x 0.60
    assert november.cost_usd == Decimal("0.26")  # 1M x 0.10 + 1M x 0.01 + 0.5M x 0.30
    assert november.version == "config:2026-11-01"


def test_unpriced_self_hosted_model_has_no_quote() -> None:
    usage = Usage(input_tokens=5_000, output_tokens=500, source="provider")
    assert book().quote("local", "acme-coder-33b-internal", usage, AT) is None


@pytest.mark.parametrize(("provider", "model"), [
    ("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-opus-4-1"),
    ("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o-mini"), ("openai", "gpt-5"),
    ("openai", "o3"), ("google", "gemini-2.5-pro"), ("deepseek", "deepseek-chat")])
def test_fast_path_equals_genai_prices_to_the_last_digit(provider: str, model: str) -> None:
    prices = PublicPrices()
    rng = random.Random(model)
    for _ in range(150):
        tokens = (rng.randrange(0, 400_000), rng.choice((0, rng.randrange(0, 150_000))),
                  rng.choice((0, rng.randrange(0, 60_000))),
                  rng.choice((0, rng.randrange(0, 60_000))), rng.randrange(0, 40_000))
        at = datetime(2026, rng.randrange(1, 12), rng.randrange(1, 28), rng.randrange(0, 24),
                      tzinfo=UTC)
        fast = prices.price(provider, model, tokens, at)
        exact = genai_prices.calc_price(genai_prices.Usage(**genai_counts(tokens)), model,
                                        provider_id=provider, genai_request_timestamp=at)
        assert fast is not None
        assert (fast.input_usd, fast.output_usd) == (exact.input_price, exact.output_price), tokens
