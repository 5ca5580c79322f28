"""Savings: what a call would have cost without routing rules, and on a shadow rule's target.

An envelope whose call a routing rule touched carries a ``Routing`` record
(docs/routing.md). ``routing_fields`` turns it into the event's routing
columns, priced with the same book and usage as the call itself:

- ``counterfactual_cost_usd``: the same usage on the route the requested model
  would have taken (``from_provider``/``from_model``), when an enforce rule
  moved the call. The saving is that minus ``cost_usd``;
- ``shadow_cost_usd``: the same usage on the shadow rule's target. What the
  rule would save is ``cost_usd`` minus that.

Usage is the served model's token counts, priced on another model: the
standard estimate, since another model's tokenizer would count a little
differently. A model no source prices claims no saving: its cost is taken
to be the call's own, so a rule never reports money it cannot show.

A call no rule touched (the usual case) gets none of these columns: one
shared empty mapping, so the hot path allocates and encodes nothing for them.
The store's column defaults fill them in, ``cost_usd`` for
``counterfactual_cost_usd`` and empty or zero for the rest, so every row
carries its counterfactual. ``reprice_routing`` re-prices the columns of a
stored row with the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from meterline.schemas import Envelope, Usage

from .price_book import PriceBook

ZERO = Decimal(0)

#: The routing columns of an event no rule touched: none, the store's defaults fill them.
NO_ROUTING: Mapping[str, Any] = MappingProxyType({})


def cost_on(book: PriceBook, provider: str, model: str, usage: Usage, at: datetime,
            actual: Decimal) -> Decimal:
    """``usage`` priced on ``model`` at ``provider``; ``actual`` when nothing prices it."""
    quote = book.quote(provider, model, usage, at)
    return actual if quote is None else quote.cost_usd


def priced_routing(book: PriceBook, usage: Usage, at: datetime, actual: Decimal, *, rule: str,
                   from_provider: str, from_model: str, shadow_rule: str, shadow_provider: str,
                   shadow_model: str) -> dict[str, Any]:
    """The routing columns of a call that cost ``actual``, given what the rules decided."""
    fields: dict[str, Any] = {}
    if rule:  # first, as in ``Event``
        fields["counterfactual_cost_usd"] = cost_on(book, from_provider, from_model, usage, at,
                                                    actual)
    fields.update({
        "routing_rule": rule, "routing_mode": "enforce" if rule else "shadow" if shadow_rule else "",
        "counterfactual_provider": from_provider if rule else "",
        "counterfactual_model": from_model if rule else "",
        "shadow_rule": shadow_rule, "shadow_provider": shadow_provider,
        "shadow_model": shadow_model,
        "shadow_cost_usd": (cost_on(book, shadow_provider, shadow_model, usage, at, actual)
                            if shadow_rule else ZERO),
    })
    return fields


def routing_fields(envelope: Envelope, book: PriceBook, actual: Decimal) -> Mapping[str, Any]:
    """The event's routing columns for ``envelope``, whose call cost ``actual``
    (``event_row`` has priced it): ``NO_ROUTING`` when no rule matched."""
    routing = envelope.routing
    if routing is None:
        return NO_ROUTING
    return priced_routing(book, envelope.usage, envelope.received_at, actual,
                          rule=routing.rule, from_provider=routing.from_provider,
                          from_model=routing.from_model, shadow_rule=routing.shadow_rule,
                          shadow_provider=routing.shadow_provider,
                          shadow_model=routing.shadow_model)


def reprice_routing(row: Mapping[str, Any], book: PriceBook, usage: Usage, at: datetime,
                    actual: Decimal) -> dict[str, Any]:
    """A stored row's routing columns re-priced; a row no enforce rule moved keeps its
    counterfactual equal to its (new) cost."""
    fields = priced_routing(book, usage, at, actual, rule=str(row.get("routing_rule") or ""),
                            from_provider=str(row.get("counterfactual_provider") or ""),
                            from_model=str(row.get("counterfactual_model") or ""),
                            shadow_rule=str(row.get("shadow_rule") or ""),
                            shadow_provider=str(row.get("shadow_provider") or ""),
                            shadow_model=str(row.get("shadow_model") or ""))
    fields.setdefault("counterfactual_cost_usd", actual)
    return fields
