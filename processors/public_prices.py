"""Public list prices from ``genai-prices``, at stream speed, exactly as it computes them.

``genai_prices.calc_price`` costs ~150 µs a call (model lookup, unit registry,
usage decomposition), which would cap one processor core at a few thousand
events per second. Its arithmetic, though, is affine in the token counts
within one *tier band*: crossing a tier threshold of total input tokens
re-prices every token ("cliff" tiers), and between thresholds cost is a
constant (per-request prices) plus one price per token kind. So
``PublicPrices`` asks genai-prices once per (model price, band) for that
affine form, by pricing a reference usage and the same usage plus one token
of each kind, and then prices every call of that band with five exact
``Decimal`` multiplications.

Guarantees:

- the result equals ``calc_price`` to the last digit: every affine form is
  checked against ``calc_price`` on a probe usage when it is built, and a form
  that does not reproduce it (a pricing rule that is not affine) is dropped
  in favour of calling ``calc_price`` for that band every time;
- the model price in force is looked up per call (``ModelInfo.get_prices``
  with the call's timestamp), so dated and time-of-day prices stay right; only
  pure functions of that price object are cached.

Token kinds are ours, not genai-prices': ``input_tokens`` *excludes* cache
reads and writes (see ``schemas.Usage``); genai-prices counts them inside its
``input_tokens``, with ``cache_write_tokens`` the total of writes of which
``cache_write_1h_tokens`` is a subset. ``genai_counts`` translates.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, Inexact
from typing import Any, NamedTuple

import genai_prices
import orjson
from genai_prices import data_snapshot
from genai_prices import types as genai_types

#: Our usage vector: (uncached input, cache read, cache write 5m, cache write 1h, output).
TokenVector = tuple[int, int, int, int, int]
_UNIT_VECTORS: tuple[TokenVector, ...] = (
    (1, 0, 0, 0, 0), (0, 1, 0, 0, 0), (0, 0, 1, 0, 0), (0, 0, 0, 1, 0), (0, 0, 0, 0, 1))
_PROBE: TokenVector = (3, 5, 7, 11, 13)
_MISSING = object()
#: Scaling by a power of ten is exact; trap (raise) if a result ever had to round.
_EXACT = Context(prec=60, traps=[Inexact])


def genai_counts(tokens: TokenVector) -> dict[str, int]:
    """genai-prices usage fields for our token vector (cache tokens inside its input)."""
    uncached, read, write_5m, write_1h, output = tokens
    counts = {"input_tokens": uncached + read + write_5m + write_1h, "output_tokens": output}
    if read:
        counts["cache_read_tokens"] = read
    if write_5m or write_1h:
        counts["cache_write_tokens"] = write_5m + write_1h
    if write_1h:
        counts["cache_write_1h_tokens"] = write_1h
    return counts


class PublicPrice(NamedTuple):
    """The public price of one call: input and output parts, unrounded, and their model
    (a ``NamedTuple`` for the reason ``price_book.Quote`` is one)."""

    input_usd: Decimal
    output_usd: Decimal
    price_model: str
    unit_prices: str


@dataclass(frozen=True, slots=True)
class _Affine:
    """cost = const + Σ coeff·tokens, per direction, valid inside one tier band.

    Held as integers at one decimal ``scale`` (cost = integer · 10^-scale):
    int arithmetic is exact and ~20x faster than ``Decimal`` with int operands.
    """

    scale: int
    input_const: int
    input_coeffs: tuple[int, int, int, int, int]
    output_const: int
    output_coeffs: tuple[int, int, int, int, int]

    @classmethod
    def of(cls, input_const: Decimal, input_coeffs: list[Decimal], output_const: Decimal,
           output_coeffs: list[Decimal]) -> _Affine:
        values = [input_const, *input_coeffs, output_const, *output_coeffs]
        scale = max(0, *(-int(value.as_tuple().exponent) for value in values))
        ints = [int(value.scaleb(scale)) for value in values]
        return cls(scale, ints[0], (ints[1], ints[2], ints[3], ints[4], ints[5]),
                   ints[6], (ints[7], ints[8], ints[9], ints[10], ints[11]))

    def apply(self, tokens: TokenVector) -> tuple[Decimal, Decimal]:
        ic, oc = self.input_coeffs, self.output_coeffs
        input_int = (self.input_const + ic[0] * tokens[0] + ic[1] * tokens[1]
                     + ic[2] * tokens[2] + ic[3] * tokens[3] + ic[4] * tokens[4])
        output_int = (self.output_const + oc[0] * tokens[0] + oc[1] * tokens[1]
                      + oc[2] * tokens[2] + oc[3] * tokens[3] + oc[4] * tokens[4])
        return (Decimal(input_int).scaleb(-self.scale, _EXACT),
                Decimal(output_int).scaleb(-self.scale, _EXACT))


def _exact(model_price: Any, tokens: TokenVector) -> tuple[Decimal, Decimal]:
    """genai-prices' own computation (the slow path and the reference)."""
    result = model_price.calc_price(genai_prices.Usage(**genai_counts(tokens)))
    return Decimal(result["input_price"]), Decimal(result["output_price"])


def _tier_starts(model_price: Any) -> tuple[int, ...]:
    starts = {tier.start for value in vars(model_price).values()
              if isinstance(value, genai_types.TieredPrices) for tier in value.tiers}
    return tuple(sorted(starts))


def _add(a: TokenVector, b: TokenVector) -> TokenVector:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4])


def _build_affine(model_price: Any, starts: tuple[int, ...], band: int) -> _Affine | None:
    """The affine form of ``model_price`` in ``band``, or None if it is not affine there."""
    low = 0 if band == 0 else starts[band - 1] + 1  # smallest total input inside the band
    high = starts[band] if band < len(starts) else None  # largest, inclusive
    if high is not None and low + sum(_PROBE[:4]) > high:
        return None  # a band too narrow to probe: price it exactly every time
    reference: TokenVector = (low, 0, 0, 0, 0)
    base_in, base_out = _exact(model_price, reference)
    in_coeffs, out_coeffs = [], []
    for unit in _UNIT_VECTORS:
        unit_in, unit_out = _exact(model_price, _add(reference, unit))
        in_coeffs.append(unit_in - base_in)
        out_coeffs.append(unit_out - base_out)
    affine = _Affine.of(base_in - in_coeffs[0] * low, in_coeffs,
                        base_out - out_coeffs[0] * low, out_coeffs)
    probe = _add(reference, _PROBE)
    return affine if affine.apply(probe) == _exact(model_price, probe) else None


class PublicPrices:
    """genai-prices lookups and prices with per-model-price caches. Not thread-safe."""

    def __init__(self) -> None:
        self._snapshot = data_snapshot.get_snapshot()
        self._models: dict[tuple[str | None, str], Any] = {}
        self._forms: dict[tuple[int, int], _Affine | None] = {}
        self._shapes: dict[int, tuple[Any, tuple[int, ...], str]] = {}
        self._tiered: dict[tuple[int, str, tuple[int, ...]], Any] = {}

    def _resolve(self, provider_id: str | None, model: str) -> tuple[Any, str] | None:
        key = (provider_id, model)
        found = self._models.get(key, _MISSING)
        if found is _MISSING:
            try:
                provider, model_info = self._snapshot.find_provider_model(
                    model, None, provider_id, None)
                found = (model_info, f"{provider.id}/{model_info.id}")
            except LookupError:
                found = None
            self._models[key] = found
        return found if isinstance(found, tuple) else None

    def _tier_price(self, model_info: Any, at: datetime, service_tier: str) -> Any:
        """The model's price at ``at`` in ``service_tier`` (genai-prices' price variants).

        genai-prices builds a new price object for each call with a context; one per
        (base price, tier, variants in force) is kept, so the per-object caches hold.
        """
        standard = model_info.get_prices(at)
        variants = tuple(id(variant) for variant in model_info.price_variants or ()
                         if variant.when.get("service_tier") == service_tier
                         and (variant.constraint is None or variant.constraint.active(at)))
        if not variants:
            return standard
        key = (id(standard), service_tier, variants)
        found = self._tiered.get(key)
        if found is None:
            context: Any = {"service_tier": service_tier}
            found = self._tiered[key] = model_info.get_prices(at, context)
        return found

    def price(self, provider_id: str | None, model: str, tokens: TokenVector,
              at: datetime, service_tier: str = "") -> PublicPrice | None:
        """The public price of ``tokens`` of ``model`` at ``at``; None if genai-prices has none.

        ``service_tier`` (OpenAI's ``flex``, ``priority``, ...) selects the tier's price
        where genai-prices has one; "" or an unknown tier is the default price.

        ``provider_id`` None lets genai-prices infer the provider from the model name.
        """
        found = self._resolve(provider_id, model)
        if found is None:
            return None
        model_info, price_model = found
        model_price = (self._tier_price(model_info, at, service_tier) if service_tier
                       else model_info.get_prices(at))
        shape = self._shapes.get(id(model_price))
        if shape is None or shape[0] is not model_price:
            # a new price object under a recycled id: forget the old one's forms
            self._forms = {k: v for k, v in self._forms.items() if k[0] != id(model_price)}
            shape = (model_price, _tier_starts(model_price),
                     orjson.dumps({"model_price": str(model_price)}).decode())
            self._shapes[id(model_price)] = shape
        _, starts, unit_prices = shape
        band = bisect_left(starts, tokens[0] + tokens[1] + tokens[2] + tokens[3])
        form_key = (id(model_price), band)
        form = self._forms.get(form_key, _MISSING)
        if form is _MISSING:
            form = _build_affine(model_price, starts, band)
            self._forms[form_key] = form
        input_usd, output_usd = (form.apply(tokens) if isinstance(form, _Affine)
                                 else _exact(model_price, tokens))
        return PublicPrice(input_usd, output_usd, price_model, unit_prices)
