"""The price book: what one call cost, as an exact decimal, and why.

Prices come from ``genai-prices`` (public list prices, tiers included) unless
the configuration has an override for the model: either fixed per-million
prices (self-hosted models, negotiated rates) or a discount factor applied to
the public price. Overrides are dated: the one in force is the latest whose
``effective_from`` is on or before the call's day, so re-pricing a past month
uses the prices of that month.

A model no source knows is *unpriced*: ``quote`` returns ``None`` and the
caller flags the event, rather than pricing it at $0 and hiding it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from importlib.metadata import version
from typing import NamedTuple

import orjson

from meterline.schemas import COST_SCALE, PriceOverride, PriceSource, ProviderKind, Usage

from .public_prices import PublicPrices

_MTOK = Decimal(1_000_000)
_QUANTUM = Decimal(1).scaleb(-COST_SCALE)
GENAI_PRICES_VERSION = version("genai-prices")
_PUBLIC_VERSION = f"genai-prices:{GENAI_PRICES_VERSION}"

#: genai-prices provider ids by provider kind; ``None`` lets it infer from the model.
_GENAI_PROVIDER: dict[ProviderKind, str | None] = {
    "openai": "openai", "anthropic": "anthropic", "azure": "azure",
    "openai_compatible": None, "simulated": None,
}


def quantize(amount: Decimal) -> Decimal:
    """Round to the stored scale (12 places, banker's rounding)."""
    return amount.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


class Quote(NamedTuple):
    """The cost of one call and the prices it was computed from.

    A ``NamedTuple``, immutable like a frozen dataclass but built in a third of the
    time (a frozen dataclass sets each field through ``object.__setattr__``): one is
    made per event on the worker's hot path.
    """

    input_cost_usd: Decimal
    output_cost_usd: Decimal
    source: PriceSource
    version: str
    price_model: str
    unit_prices: str

    @property
    def cost_usd(self) -> Decimal:
        return self.input_cost_usd + self.output_cost_usd


class PriceBook:
    """Prices calls. Pure apart from reading the genai-prices snapshot it ships.

    ``quote`` is called once per event on the stream's hot path, and again by
    re-pricing; it never blocks and never does I/O. Not thread-safe (caches).
    """

    def __init__(self, overrides: list[PriceOverride],
                 provider_kinds: dict[str, ProviderKind] | None = None) -> None:
        self._kinds = provider_kinds or {}
        self._overrides: dict[str, list[tuple[date, PriceOverride]]] = defaultdict(list)
        for override in sorted(overrides, key=lambda o: o.effective_from):
            self._overrides[override.model].append(
                (date.fromisoformat(override.effective_from), override))
        self._public_prices = PublicPrices()

    def _override_for(self, provider: str, model: str, day: date) -> PriceOverride | None:
        chosen = None
        for effective_from, override in self._overrides.get(model, ()):
            if override.provider and override.provider != provider:
                continue
            if effective_from <= day:
                chosen = override
        return chosen

    def quote(self, provider: str, model: str, usage: Usage, at: datetime) -> Quote | None:
        """The cost of ``usage`` on ``model`` at ``at``; None when no source prices the model."""
        override = self._override_for(provider, model, at.date()) if self._overrides else None
        if override is not None and override.discount_factor is None:
            return _fixed(override, usage)
        public = self._public(provider, model, usage, at)
        if public is None or override is None or override.discount_factor is None:
            return public
        factor = override.discount_factor
        return Quote(quantize(public.input_cost_usd * factor),
                     quantize(public.output_cost_usd * factor), "override",
                     f"config:{override.effective_from}+genai-prices:{GENAI_PRICES_VERSION}",
                     public.price_model,
                     orjson.dumps({"discount_factor": str(factor),
                                   "public": orjson.loads(public.unit_prices)}).decode())

    def _public(self, provider: str, model: str, usage: Usage, at: datetime) -> Quote | None:
        kind = self._kinds.get(provider)
        provider_id = _GENAI_PROVIDER.get(kind) if kind else provider
        tokens = (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_5m_tokens,
                  usage.cache_write_1h_tokens, usage.output_tokens)
        tier = usage.service_tier
        price = self._public_prices.price(provider_id, model, tokens, at, tier)
        if price is None and provider_id is not None:
            # a gateway provider name genai-prices does not know: infer from the model
            price = self._public_prices.price(None, model, tokens, at, tier)
        if price is None:
            return None
        return Quote(quantize(price.input_usd), quantize(price.output_usd), "genai-prices",
                     _PUBLIC_VERSION, price.price_model, price.unit_prices)


def quote_call(book: PriceBook, provider: str, served_model: str, requested_model: str,
               usage: Usage, at: datetime) -> Quote | None:
    """The price of a call: the served model's, else the requested model's, else None."""
    quote = book.quote(provider, served_model, usage, at)
    if quote is None and served_model != requested_model:
        quote = book.quote(provider, requested_model, usage, at)
    return quote


def _fixed(override: PriceOverride, usage: Usage) -> Quote:
    read = override.cache_read_per_mtok
    write_5m = override.cache_write_5m_per_mtok
    write_1h = override.cache_write_1h_per_mtok
    input_price = override.input_per_mtok
    input_cost = (usage.input_tokens * input_price
                  + usage.cache_read_tokens * (input_price if read is None else read)
                  + usage.cache_write_5m_tokens * (input_price if write_5m is None else write_5m)
                  + usage.cache_write_1h_tokens * (input_price if write_1h is None else write_1h))
    output_cost = usage.output_tokens * override.output_per_mtok
    units = {name: str(value) for name, value in (
        ("input_per_mtok", input_price), ("output_per_mtok", override.output_per_mtok),
        ("cache_read_per_mtok", read), ("cache_write_5m_per_mtok", write_5m),
        ("cache_write_1h_per_mtok", write_1h)) if value is not None}
    return Quote(quantize(input_cost / _MTOK), quantize(output_cost / _MTOK), "override",
                 f"config:{override.effective_from}", override.model,
                 orjson.dumps(units).decode())
