"""Pricing what routing rules changed: the counterfactual and shadow costs of an event."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterline.processors import Directory, PriceBook
from meterline.processors.enrich import enrich, event_row
from meterline.processors.reprice import reprice_row
from meterline.processors.savings import NO_ROUTING, routing_fields
from meterline.schemas import Envelope, PriceOverride, Routing, Settings, Usage

SETTINGS = Settings(teams=[{"name": "platform", "cost_centre": "CC-4100"}])
AT = datetime(2026, 10, 14, 9, 30, tzinfo=UTC)
USAGE = Usage(input_tokens=1_000_000, output_tokens=100_000, source="provider")
#: Fixed prices, so every figure below is checked by hand: $/Mtok in, out.
PRICES = {"big-model": (Decimal(10), Decimal(40)), "small-model": (Decimal(1), Decimal(4)),
          "tiny-model": (Decimal("0.5"), Decimal(2))}


def book() -> PriceBook:
    return PriceBook([PriceOverride(model=model, input_per_mtok=i, output_per_mtok=o)
                      for model, (i, o) in PRICES.items()],
                     {name: p.kind for name, p in SETTINGS.providers.items()})


def envelope(served: str = "big-model", routing: Routing | None = None,
             usage: Usage = USAGE) -> Envelope:
    return Envelope(request_id="0193f3b0-0000-7000-8000-000000000001", received_at=AT,
                    done_at=AT, surface="openai.chat", provider="openai",
                    requested_model="big-model", served_model=served, key_id="key_1",
                    user="alice", team="platform", status=200, outcome="ok", usage=usage,
                    routing=routing)


ENFORCED = Routing(rule="small-for-docs", from_provider="openai", from_model="big-model")
def routed(envelope: Envelope) -> dict[str, Any]:
    """The event row's columns for ``envelope``, routing ones included, as the worker makes it."""
    return event_row(envelope, Directory(SETTINGS), book())


SHADOWED = Routing(from_provider="openai", from_model="big-model", shadow_rule="try-tiny",
                   shadow_provider="openai", shadow_model="tiny-model")


def test_a_call_no_rule_touched_leaves_its_routing_columns_to_the_store() -> None:
    fields = routing_fields(envelope(), book(), Decimal("14"))
    assert fields is NO_ROUTING and not fields
    event = enrich(envelope(), Directory(SETTINGS), book())
    assert (event.routing_mode, event.routing_rule, event.shadow_rule) == ("", "", "")
    assert event.counterfactual_cost_usd is None and event.shadow_cost_usd == 0


def test_an_enforced_call_costs_its_target_and_carries_the_requested_models_price() -> None:
    event = enrich(envelope("small-model", ENFORCED), Directory(SETTINGS), book())
    assert event.cost_usd == Decimal("1.4")  # 1 Mtok x $1 + 0.1 Mtok x $4
    assert event.counterfactual_cost_usd == Decimal("14")  # the same usage on big-model
    assert (event.routing_rule, event.routing_mode) == ("small-for-docs", "enforce")
    assert (event.counterfactual_provider, event.counterfactual_model) == ("openai", "big-model")
    assert (event.shadow_rule, event.shadow_cost_usd) == ("", Decimal(0))


def test_a_shadow_rule_prices_its_target_and_changes_nothing() -> None:
    event = enrich(envelope("big-model", SHADOWED), Directory(SETTINGS), book())
    assert event.cost_usd == Decimal("14") and event.served_model == "big-model"
    assert (event.routing_rule, event.routing_mode, event.shadow_rule) == ("", "shadow",
                                                                           "try-tiny")
    assert (event.shadow_provider, event.shadow_model) == ("openai", "tiny-model")
    assert event.shadow_cost_usd == Decimal("0.7")
    assert event.counterfactual_cost_usd is None  # nothing moved: the store's default, cost_usd


def test_enforce_and_shadow_on_one_call_are_priced_each() -> None:
    both = ENFORCED.model_copy(update={"shadow_rule": "try-tiny", "shadow_provider": "openai",
                                       "shadow_model": "tiny-model"})
    fields = routed(envelope("small-model", both))
    assert (fields["counterfactual_cost_usd"], fields["shadow_cost_usd"]) == (Decimal("14"),
                                                                               Decimal("0.7"))
    assert fields["routing_mode"] == "enforce"


def test_a_target_nothing_prices_claims_no_saving() -> None:
    unknown = ENFORCED.model_copy(update={"from_model": "nobody-prices-this"})
    fields = routed(envelope("small-model", unknown))
    assert fields["counterfactual_cost_usd"] == Decimal("1.4")  # the call's own cost
    shadow = SHADOWED.model_copy(update={"shadow_model": "nobody-prices-this"})
    assert routed(envelope("big-model", shadow))["shadow_cost_usd"] == 14


def test_a_call_without_usage_saves_nothing() -> None:
    fields = routed(envelope("small-model", ENFORCED, Usage(source="missing")))
    assert (fields["counterfactual_cost_usd"], fields["shadow_cost_usd"]) == (0, 0)


def test_repricing_moves_the_counterfactual_and_shadow_costs_with_the_book() -> None:
    row = event_row(envelope("small-model", ENFORCED.model_copy(update={
        "shadow_rule": "try-tiny", "shadow_provider": "openai", "shadow_model": "tiny-model"})),
        Directory(SETTINGS), book())
    stored = {**row, "received_at": "2026-10-14 09:30:00.000000"}
    assert reprice_row(stored, book()) is None  # same book, nothing changed
    dearer = PriceBook([PriceOverride(model=m, input_per_mtok=2 * i, output_per_mtok=2 * o)
                        for m, (i, o) in PRICES.items()],
                       {name: p.kind for name, p in SETTINGS.providers.items()})
    new = reprice_row(stored, dearer)
    assert new is not None and new["version"] == 2
    assert (new["cost_usd"], new["counterfactual_cost_usd"], new["shadow_cost_usd"]) == (
        Decimal("2.8"), Decimal("28"), Decimal("1.4"))
    # a row no rule moved keeps its counterfactual at its cost
    plain = {**event_row(envelope(), Directory(SETTINGS), book()),
             "received_at": "2026-10-14 09:30:00.000000"}
    moved = reprice_row(plain, dearer)
    assert moved is not None and moved["counterfactual_cost_usd"] == moved["cost_usd"] == 28
