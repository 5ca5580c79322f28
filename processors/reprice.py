"""Re-pricing one stored event with today's dated price book. Pure.

``reprice_row`` takes an ``events`` row as ClickHouse returns it in
JSONEachRow (decimals as strings, times as ``YYYY-MM-DD hh:mm:ss.ffffff``
UTC) and answers the row's next version when its price changes, or None when
it does not. The price is chosen exactly as the stream does it
(``quote_call`` at the call's ``received_at``, overrides by their
``effective_from``), so re-pricing a range with an unchanged book is a no-op.

"Changes" means a different cost (input, output, total, and the routing
columns' counterfactual and shadow costs, ``savings.reprice_routing``), a
different ``unpriced`` flag or a different price source or model. A new
genai-prices release that leaves the cost unchanged does not create versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterline.schemas import Usage

from .enrich import priced_fields
from .price_book import PriceBook, quote_call
from .savings import reprice_routing

_COMPARED_DECIMALS = ("input_cost_usd", "output_cost_usd", "cost_usd",
                      "counterfactual_cost_usd", "shadow_cost_usd")
_COMPARED_TEXT = ("price_source", "price_model")


def _moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _stored_cost(row: Mapping[str, Any], name: str) -> Decimal:
    """A cost column of ``row``; one it lacks reads as the store's default for it
    (``counterfactual_cost_usd`` defaults to ``cost_usd``, the others to 0)."""
    if name in row:
        return Decimal(str(row[name]))
    return Decimal(str(row["cost_usd"])) if name == "counterfactual_cost_usd" else Decimal(0)


def usage_of(row: Mapping[str, Any]) -> Usage:
    return Usage(input_tokens=int(row["input_tokens"]), output_tokens=int(row["output_tokens"]),
                 cache_read_tokens=int(row["cache_read_tokens"]),
                 cache_write_5m_tokens=int(row["cache_write_5m_tokens"]),
                 cache_write_1h_tokens=int(row["cache_write_1h_tokens"]),
                 reasoning_tokens=int(row["reasoning_tokens"]), source=row["usage_source"],
                 service_tier=str(row.get("service_tier") or ""))


def reprice_row(row: Mapping[str, Any], book: PriceBook) -> dict[str, Any] | None:
    """The next version of ``row`` priced with ``book``, or None if its price is unchanged."""
    usage, at = usage_of(row), _moment(row["received_at"])
    quote = quote_call(book, str(row["provider"]), str(row["served_model"]),
                       str(row["requested_model"]), usage, at)
    fields = priced_fields(quote, usage)
    fields.update(reprice_routing(row, book, usage, at, fields["cost_usd"]))
    changed = (any(_stored_cost(row, name) != fields[name] for name in _COMPARED_DECIMALS)
               or any(str(row[name]) != fields[name] for name in _COMPARED_TEXT)
               or bool(row["unpriced"]) != fields["unpriced"])
    if not changed:
        return None
    new = {name: value for name, value in row.items() if name != "inserted_at"}
    new.update(fields)
    new["version"] = int(row["version"]) + 1
    return new
