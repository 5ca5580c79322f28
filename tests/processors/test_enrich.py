"""Enrichment and validation: the fast row path is a valid Event, poison is named."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import orjson
import pytest

from meterline.processors import Directory, PoisonMessage, PriceBook, enrich, parse_envelope
from meterline.processors.enrich import encode_event_row, event_row
from meterline.processors.reprice import reprice_row
from meterline.schemas import Envelope, Event, PriceOverride, Settings, Usage, new_request_id

SETTINGS = Settings(teams=[{"name": "platform", "cost_centre": "CC-4100"}],
                    providers={"anthropic": {"kind": "anthropic",
                                             "base_url": "https://api.anthropic.com"},
                               "local": {"kind": "openai_compatible",
                                         "base_url": "http://127.0.0.1:8000"}})


def envelope(**changes: Any) -> Envelope:
    at = datetime(2026, 11, 10, 14, 30, tzinfo=UTC)
    fields: dict[str, Any] = {
        "request_id": new_request_id(), "received_at": at, "first_byte_at": at, "done_at": at,
        "surface": "anthropic.messages", "provider": "anthropic",
        "requested_model": "claude-sonnet-4-5", "served_model": "claude-sonnet-4-5",
        "key_id": "key_0123456789ab", "user": "alice", "team": "platform", "repo": "acme/api",
        "repo_source": "header", "tool": "claude-code", "status": 200, "outcome": "ok",
        "usage": Usage(input_tokens=1_000, cache_read_tokens=20_000, cache_write_1h_tokens=5_000,
                       output_tokens=800, source="provider")}
    fields.update(changes)
    return Envelope(**fields)


def tools() -> tuple[Directory, PriceBook]:
    return Directory(SETTINGS), PriceBook([], {n: p.kind for n, p in SETTINGS.providers.items()})


#: Left out of the row of a call no routing rule matched (``processors.savings``).
ROUTING_COLUMNS = {"counterfactual_cost_usd", "routing_rule", "routing_mode",
                   "counterfactual_provider", "counterfactual_model", "shadow_rule",
                   "shadow_provider", "shadow_model", "shadow_cost_usd"}


def test_event_row_is_a_valid_event_and_encodes_exact_decimals() -> None:
    directory, book = tools()
    row = event_row(envelope(), directory, book)
    event = Event.model_validate(row)
    assert (event.cost_usd, event.cost_centre, event.unpriced, event.attributed) == (
        Decimal("0.051"), "CC-4100", False, True)
    decoded = orjson.loads(encode_event_row(row))
    assert decoded["cost_usd"] == "0.051000000000"
    # in field order; a call no routing rule matched leaves its routing columns to the store
    assert list(decoded) == [name for name in Event.model_fields
                             if name not in ROUTING_COLUMNS]
    tiny = encode_event_row({"cost_usd": Decimal("1E-12"), "zero": Decimal("0E-12")})
    assert orjson.loads(tiny) == {"cost_usd": "1E-12", "zero": "0E-12"}  # exact; the store
    # reads these spellings exactly (tests/sinks/test_writer.py)


def test_unpriced_model_is_flagged_never_free() -> None:
    directory, book = tools()
    event = enrich(envelope(provider="local", requested_model="acme-coder-33b",
                            served_model="acme-coder-33b"), directory, book)
    assert event.unpriced and event.cost_usd == 0 and event.price_source == "none"
    silent = enrich(envelope(provider="local", served_model="acme-coder-33b",
                             requested_model="acme-coder-33b", usage=Usage()), directory, book)
    assert not silent.unpriced  # usage missing: nothing to price, nothing to flag


def test_requested_model_prices_an_unknown_served_alias() -> None:
    directory, book = tools()
    event = enrich(envelope(served_model="claude-sonnet-4-5-internal-alias-xyz"), directory, book)
    assert event.cost_usd == Decimal("0.051") and not event.unpriced


@pytest.mark.parametrize(("value", "reason"), [
    (b"", "empty message value"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"schema_version": "2.0", "whatever": 1}', "schema_version '2.0' not supported"),
    (b'{"schema_version": "1.0", "request_id": "x"}', "invalid envelope: received_at"),
])
def test_poison_envelopes_are_named(value: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        parse_envelope(value)
    assert reason in caught.value.reason


def test_valid_envelope_round_trips_through_the_fast_validator() -> None:
    original = envelope()
    parsed = parse_envelope(original.model_dump_json().encode())
    assert Envelope.model_validate(msgspec.to_builtins(parsed, builtin_types=(datetime,))) == original


def test_reprice_row_is_a_no_op_with_the_same_book_and_a_new_version_with_a_new_one() -> None:
    directory, book = tools()
    stored = orjson.loads(encode_event_row(event_row(envelope(), directory, book)))
    stored["received_at"] = "2026-11-10 14:30:00.000000"  # as ClickHouse renders it
    assert reprice_row(stored, book) is None
    discounted = PriceBook([PriceOverride(model="claude-sonnet-4-5", effective_from="2026-11-01",
                                          input_per_mtok=Decimal(0), output_per_mtok=Decimal(0),
                                          discount_factor=Decimal("0.5"))],
                           {"anthropic": "anthropic"})
    new = reprice_row(stored, discounted)
    assert new is not None
    assert (new["version"], new["cost_usd"], new["price_source"]) == (
        2, Decimal("0.0255"), "override")
    assert new["request_id"] == stored["request_id"]
