"""Fallback's pure parts: aliases with targets, weighted first choice, breakers, retry budget.

The attempt loop itself runs against the simulated provider in tests/e2e/test_fallback.py.
"""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from meterline.ingest.breaker import Breaker, Breakers, BreakerState
from meterline.ingest.fallback import RetryBudget, retryable
from meterline.ingest.model_list import merged_list
from meterline.ingest.routing import FallbackRoute, Route, Router
from meterline.schemas import Settings, new_request_id

PROVIDERS = {
    "openai": {"kind": "openai", "base_url": "https://api.openai.com"},
    "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com"},
    "anthropic-backup": {"kind": "anthropic", "base_url": "https://backup.example"},
    "vllm": {"kind": "openai_compatible", "base_url": "http://gpu:8000"},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(models: dict[str, object]) -> Settings:
    return Settings(providers=PROVIDERS, models=models)


def test_targets_route_first_then_fall_back_in_listed_order() -> None:
    router = Router(settings({
        "claude-sonnet": {"targets": [
            {"provider": "anthropic", "model": "claude-sonnet-4-5"},
            {"provider": "anthropic-backup", "model": "claude-sonnet-4-5-backup", "weight": 0}]},
        "gpt-4o": {"provider": "openai", "model": "gpt-4o-2024-11-20"},
    }))
    first = router.route(True, "claude-sonnet", new_request_id())
    assert (first.provider_name, first.served_model) == ("anthropic", "claude-sonnet-4-5")
    assert isinstance(first, FallbackRoute)
    assert [(r.provider_name, r.served_model, r.anthropic_style)
            for r in first.alias.after(first)] == [
        ("anthropic-backup", "claude-sonnet-4-5-backup", True)]
    # the one-target form routes as before, with nothing to fall back to
    single = router.route(False, "gpt-4o")
    assert (type(single), single.provider_name, single.served_model) == (
        Route, "openai", "gpt-4o-2024-11-20")
    assert type(router.route(False, "gpt-4.1")) is Route  # unlisted: the default provider


def test_weighted_first_target_is_drawn_by_request_id() -> None:
    router = Router(settings({"fast": {"targets": [
        {"provider": "openai", "model": "gpt-4o-mini", "weight": 3},
        {"provider": "vllm", "model": "llama-3.3", "weight": 1}]}}))
    ids = [new_request_id() for _ in range(4000)]
    firsts = Counter(router.route(False, "fast", request_id).provider_name for request_id in ids)
    assert 2700 <= firsts["openai"] <= 3300 and firsts["openai"] + firsts["vllm"] == 4000
    # the same id always draws the same target; the other follows as the fallback
    for request_id in ids[:50]:
        route = router.route(False, "fast", request_id)
        assert router.route(False, "fast", request_id) is route
        assert isinstance(route, FallbackRoute)
        assert [r.provider_name for r in route.alias.after(route)] == (
            ["vllm"] if route.provider_name == "openai" else ["openai"])


def test_weight_zero_is_a_fallback_only() -> None:
    router = Router(settings({"claude": {"targets": [
        {"provider": "anthropic", "model": "claude-sonnet-4-5"},
        {"provider": "anthropic-backup", "model": "claude-sonnet-4-5", "weight": 0}]}}))
    assert {router.route(True, "claude", new_request_id()).provider_name
            for _ in range(300)} == {"anthropic"}


def test_models_list_keeps_listing_aliases_with_targets() -> None:
    router = Router(settings({"fast": {"targets": [{"provider": "openai", "model": "gpt-4o-mini"},
                                                   {"provider": "vllm", "model": "llama"}]}}))
    merged = merged_list(None, b"", router.aliases, anthropic=False)
    assert merged is not None and b'"id":"fast"' in merged[1]


def test_an_alias_may_mix_api_shapes_and_marks_the_routes_it_translates() -> None:
    router = Router(settings({
        "any": {"targets": [{"provider": "anthropic", "model": "claude-sonnet-4-5"},
                            {"provider": "openai", "model": "gpt-4.1"},
                            {"provider": "vllm", "model": "llama"}]},
        "claude-for-chat": {"provider": "anthropic", "model": "claude-sonnet-4-5"}}))
    # an OpenAI-style call: the Anthropic target is translated, the others are not
    first = router.route(False, "any", new_request_id())
    assert isinstance(first, FallbackRoute) and first.cross_shape
    assert [(r.provider_name, r.cross_shape) for r in first.alias.after(first)] == [
        ("openai", False), ("vllm", False)]
    # an Anthropic-style call: the reverse
    anthropic_first = router.route(True, "any", new_request_id())
    assert isinstance(anthropic_first, FallbackRoute) and not anthropic_first.cross_shape
    assert [r.cross_shape for r in anthropic_first.alias.after(anthropic_first)] == [True, True]
    # the one-target form and unlisted models too, whatever the default provider's kind
    assert router.route(False, "claude-for-chat").cross_shape
    assert not router.route(True, "claude-for-chat").cross_shape
    assert not router.route(False, "gpt-4.1").cross_shape


@pytest.mark.parametrize(("route", "problem"), [
    ({"provider": "openai", "targets": [{"provider": "openai"}]}, "either provider"),
    ({"model": "gpt-4o"}, "either provider"),
    ({"targets": [{"provider": "openai", "weight": 0}]}, "weights add up to 0"),
    ({"targets": [{"provider": "nowhere"}]}, "unknown provider 'nowhere'"),
])
def test_alias_forms_are_validated(route: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        settings({"x": route})


def test_retryable_statuses() -> None:
    assert [s for s in (200, 400, 401, 404, 408, 429, 500, 502, 503, 529) if retryable(s)] == [
        429, 500, 502, 503, 529]


class Changes(list[tuple[str, str, BreakerState]]):
    """The breakers' changes of state, as ``on_change`` reports them."""


def breakers(clock: Clock, changes: Changes) -> Breakers:
    return Breakers(3, 30.0, lambda p, m, s: changes.append((p, m, s)), clock)


def state(breaker: Breaker) -> BreakerState:
    return breaker.state  # read through a call: mypy narrows the attribute after a compare


def test_breaker_opens_after_failures_in_a_row_and_a_success_resets_the_count() -> None:
    clock, changes = Clock(), Changes()
    breaker = breakers(clock, changes).get("anthropic", "claude-sonnet-4-5")
    for _ in range(2):
        breaker.failed()
    breaker.succeeded()  # two failures, then an answer: the count starts again
    breaker.failed()
    breaker.failed()
    assert state(breaker) == "closed" and breaker.admit()
    breaker.failed()
    assert state(breaker) == "open" and not breaker.admit()
    assert changes == [("anthropic", "claude-sonnet-4-5", "open")]


def test_breaker_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock, changes = Clock(), Changes()
    breaker = breakers(clock, changes).get("anthropic", "m")
    for _ in range(3):
        breaker.failed()
    clock.now += 29.9
    assert not breaker.admit()
    clock.now += 0.1
    assert breaker.admit() and state(breaker) == "half_open"  # the probe
    assert not breaker.admit()  # the others keep skipping while the probe is out
    breaker.succeeded()
    assert state(breaker) == "closed" and breaker.admit()
    assert [change for _, _, change in changes] == ["open", "half_open", "closed"]


def test_breaker_failed_probe_opens_again_and_a_lost_probe_is_replaced() -> None:
    clock, changes = Clock(), Changes()
    breaker = breakers(clock, changes).get("anthropic", "m")
    for _ in range(3):
        breaker.failed()
    clock.now += 30
    assert breaker.admit()
    breaker.failed()  # the probe failed: open for another breaker_open_s
    assert state(breaker) == "open" and not breaker.admit()
    clock.now += 30
    assert breaker.admit()  # a probe whose call never reports ...
    clock.now += 30
    assert breaker.admit()  # ... is replaced after breaker_open_s
    assert [change for _, _, change in changes] == ["open", "half_open", "open", "half_open"]


def test_breakers_are_per_target() -> None:
    clock, changes = Clock(), Changes()
    every = breakers(clock, changes)
    assert every.get("anthropic", "a") is every.get("anthropic", "a")
    for _ in range(3):
        every.get("anthropic", "a").failed()
    assert not every.get("anthropic", "a").admit()
    assert every.get("anthropic", "b").admit() and every.get("anthropic-backup", "a").admit()


def test_retry_budget_floor_then_ratio_of_calls_over_the_last_minute() -> None:
    clock = Clock()
    budget = RetryBudget(0.2, 10, clock)

    def retries_allowed() -> int:
        count = 0
        while budget.allows():
            budget.spend()
            count += 1
        return count

    assert retries_allowed() == 10  # the floor, with no traffic
    clock.now += 61
    for _ in range(100):
        budget.record_call()
    assert retries_allowed() == 20  # 20 % of 100 calls
    clock.now += 30
    for _ in range(100):
        budget.record_call()
    assert retries_allowed() == 20  # 200 calls in the minute: 40, 20 already spent
    clock.now += 31  # the first 100 calls and their 20 retries leave the window
    assert retries_allowed() == 0  # 100 calls, 20 retries still in it
    clock.now += 30
    assert retries_allowed() == 10
