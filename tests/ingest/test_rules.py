"""Routing rules: their checks at start, what they match, and the decision they record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from meterline.ingest.call import CallRecord
from meterline.ingest.routing import Route, Router
from meterline.ingest.rules import CallFacts, RuleBook, has_images, max_tokens
from meterline.policy.rules import EgressPolicy
from meterline.schemas import KeySettings, Routing, Settings

PROVIDERS = {
    "openai": {"kind": "openai", "base_url": "https://api.openai.com", "api_key": "sk-o"},
    "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com", "api_key": "a"},
    "vllm": {"kind": "openai_compatible", "base_url": "http://gpu:8000"},
}
MODELS = {"haiku": {"provider": "anthropic", "model": "claude-haiku-4-5"},
          "fast": {"targets": [{"provider": "openai", "model": "gpt-4o-mini", "weight": 1},
                               {"provider": "vllm", "model": "llama-3.3", "weight": 1}]}}


def settings(*rules: dict[str, Any], **extra: Any) -> Settings:
    return Settings(providers=PROVIDERS, models=MODELS, routing_rules=list(rules), **extra)


def rule(name: str, match: dict[str, Any], target: dict[str, str],
         mode: str = "enforce") -> dict[str, Any]:
    return {"name": name, "mode": mode, "match": match, "target": target}


def book(config: Settings) -> RuleBook:
    found = RuleBook.from_settings(config, Router(config), EgressPolicy.from_settings(config))
    assert found is not None
    return found


def facts(**given: Any) -> CallFacts:
    base: dict[str, Any] = {"tool": "cursor", "repo": "acme/web", "team": "platform",
                            "model": "gpt-4o", "request_bytes": 2_000, "payload": {}}
    return CallFacts(**{**base, **given})


def default(config: Settings, model: str = "gpt-4o", anthropic: bool = False) -> Route:
    return Router(config).route(anthropic, model)


# -- settings, checked at start ------------------------------------------------------------


def test_no_rules_means_no_book_so_the_hot_path_skips_it() -> None:
    config = settings()
    assert RuleBook.from_settings(config, Router(config), EgressPolicy.from_settings(config)) is None


def test_a_target_alias_that_does_not_exist_is_refused_with_the_rules_name() -> None:
    with pytest.raises(ValidationError, match=r"routing_rules\.cheap: target 'nano' is not an "
                                              r"alias in models \(fast, haiku\)"):
        settings(rule("cheap", {"teams": ["platform"]}, {"model": "nano"}))


def test_a_target_provider_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"routing_rules\.cheap: target provider 'groq' is "
                                              r"not configured"):
        settings(rule("cheap", {"teams": ["platform"]}, {"provider": "groq", "model": "x"}))


def test_rule_names_are_unique_and_plain_and_a_match_names_a_condition() -> None:
    with pytest.raises(ValidationError, match="rule names must be unique"):
        settings(rule("a", {"teams": ["x"]}, {"model": "haiku"}),
                 rule("a", {"teams": ["y"]}, {"model": "haiku"}))
    with pytest.raises(ValidationError, match="name"):
        settings(rule("no spaces", {"teams": ["x"]}, {"model": "haiku"}))
    with pytest.raises(ValidationError, match="match needs at least one condition"):
        settings(rule("everything", {}, {"model": "haiku"}))
    with pytest.raises(ValidationError, match="mode"):
        settings(rule("a", {"teams": ["x"]}, {"model": "haiku"}, mode="sometimes"))


def test_the_mode_defaults_to_shadow() -> None:
    config = Settings(providers=PROVIDERS, models=MODELS, routing_rules=[
        {"name": "a", "match": {"teams": ["x"]}, "target": {"model": "haiku"}}])
    assert config.routing_rules[0].mode == "shadow"


# -- matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(("match", "hit", "miss"), [
    ({"teams": ["platform", "web"]}, {}, {"team": "payments"}),
    ({"tools": ["cursor"]}, {}, {"tool": "claude-code"}),
    ({"repos": ["acme/*"]}, {"repo": "acme/api"}, {"repo": "other/api"}),
    ({"models": ["gpt-4o", "claude-opus-*"]}, {"model": "claude-opus-4-1"}, {"model": "gpt-5"}),
    ({"request_bytes_at_most": 2_000}, {}, {"request_bytes": 2_001}),
    ({"estimated_tokens_at_most": 2}, {"payload": {"messages": [{"content": "12345678"}]}},
     {"payload": {"messages": [{"content": "123456789"}]}}),
    ({"max_tokens_at_most": 512}, {"payload": {"max_tokens": 512}},
     {"payload": {"max_tokens": 513}}),
    ({"max_tokens_at_most": 512}, {"payload": {"max_output_tokens": 100}}, {"payload": {}}),
    ({"has_tools": True}, {"payload": {"tools": [{"type": "function"}]}}, {"payload": {}}),
    ({"has_tools": False}, {"payload": {"tools": []}}, {"payload": {"tools": [{"x": 1}]}}),
    ({"has_images": False}, {"payload": {"messages": [{"content": "hi"}]}},
     {"payload": {"messages": [{"content": [{"type": "image_url", "image_url": {}}]}]}}),
    ({"teams": ["platform"], "tools": ["cursor"]}, {}, {"tool": "codex"}),
])
def test_each_condition_matches_and_all_must_hold(match: dict[str, Any], hit: dict[str, Any],
                                                  miss: dict[str, Any]) -> None:
    config = settings(rule("r", match, {"model": "fast"}, mode="shadow"))
    rules = book(config)
    route = default(config)
    assert rules.decide(facts(**hit), False, "id", route)[1] is not None
    assert rules.decide(facts(**miss), False, "id", route)[1] is None


def test_images_are_found_in_every_apis_content_parts() -> None:
    assert has_images({"messages": [{"content": [{"type": "text"}, {"type": "image",
                                                                     "source": {}}]}]})
    assert has_images({"input": [{"content": [{"type": "input_image", "image_url": "x"}]}]})
    assert not has_images({"messages": [{"content": [{"type": "text", "text": "image"}]}]})
    assert max_tokens({"max_tokens": True}) is None


# -- the decision --------------------------------------------------------------------------


def test_the_first_matching_enforce_rule_routes_and_the_first_shadow_rule_is_recorded() -> None:
    config = settings(
        rule("watch-small", {"request_bytes_at_most": 4_000}, {"provider": "vllm",
                                                                "model": "llama-3.3"}, "shadow"),
        rule("small-to-mini", {"request_bytes_at_most": 4_000},
             {"provider": "openai", "model": "gpt-4o-mini"}),
        rule("later", {"teams": ["platform"]}, {"provider": "vllm", "model": "x"}),
        rule("later-shadow", {"teams": ["platform"]}, {"model": "fast"}, "shadow"))
    route, record = book(config).decide(facts(), False, "id", default(config))
    assert (route.provider_name, route.served_model) == ("openai", "gpt-4o-mini")
    assert record == Routing(rule="small-to-mini", from_provider="openai", from_model="gpt-4o",
                             shadow_rule="watch-small", shadow_provider="vllm",
                             shadow_model="llama-3.3")


def test_a_shadow_rule_alone_leaves_the_route_unchanged() -> None:
    config = settings(rule("try-haiku", {"tools": ["claude-code"]}, {"model": "haiku"}, "shadow"))
    before = default(config, "claude-sonnet-4-5", anthropic=True)
    route, record = book(config).decide(facts(tool="claude-code", model="claude-sonnet-4-5"),
                                        True, "id", before)
    assert route is before
    assert record == Routing(from_provider="anthropic", from_model="claude-sonnet-4-5",
                             shadow_rule="try-haiku", shadow_provider="anthropic",
                             shadow_model="claude-haiku-4-5")


def test_an_alias_target_draws_its_first_target_from_the_request_id() -> None:
    config = settings(rule("to-fast", {"teams": ["platform"]}, {"model": "fast"}))
    rules, router = book(config), Router(config)
    for request_id in ("a", "b", "c", "d", "e"):
        route, _ = rules.decide(facts(), False, request_id, default(config))
        expected = router.route(False, "fast", request_id)
        assert (route.provider_name, route.served_model) == (expected.provider_name,
                                                             expected.served_model)


def test_a_target_of_another_api_shape_is_passed_over() -> None:
    config = settings(rule("to-haiku", {"teams": ["platform"]}, {"model": "haiku"}),
                      rule("to-mini", {"teams": ["platform"]},
                           {"provider": "openai", "model": "gpt-4o-mini"}))
    route, record = book(config).decide(facts(), False, "id", default(config))
    assert record is not None and record.rule == "to-mini" and route.provider_name == "openai"
    # an Anthropic-style call: only the anthropic target can serve it
    route, record = book(config).decide(facts(), True, "id", default(config, "x", True))
    assert record is not None and record.rule == "to-haiku"


def test_a_target_the_key_may_not_call_is_passed_over_not_refused() -> None:
    config = settings(rule("to-mini", {"teams": ["platform"]},
                           {"provider": "openai", "model": "gpt-4o-mini"}))
    key = KeySettings(id="key_0123456789ab", user="alice", team="platform", sha256="a" * 64,
                      allowed_models=["gpt-4o"])
    call = CallRecord(request_id="id", received_at=datetime.now(UTC), started_ns=0,
                      surface="openai.chat", key=key, user_agent="cursor/1.0",
                      requested_model="gpt-4o", payload={})
    before = default(config)
    assert book(config).apply(call, before, False) is before
    assert call.routing is None
    allowed = CallRecord(request_id="id", received_at=datetime.now(UTC), started_ns=0,
                         surface="openai.chat", key=key.model_copy(update={"allowed_models": []}),
                         user_agent="cursor/1.0", requested_model="gpt-4o", payload={})
    after = book(config).apply(allowed, before, False)
    assert after.served_model == "gpt-4o-mini"
    assert allowed.routing is not None and allowed.routing.rule == "to-mini"


def test_a_shadow_rule_records_only_what_enforcing_it_would_do() -> None:
    config = settings(rule("watch-mini", {"teams": ["platform"]},
                           {"provider": "openai", "model": "gpt-4o-mini"}, "shadow"))
    before, rules = default(config), book(config)
    assert rules.decide(facts(), False, "id", before, lambda route: False) == (before, None)
    allowed = rules.decide(facts(), False, "id", before, lambda route: True)
    assert allowed[0] is before and allowed[1] is not None
    assert allowed[1].shadow_model == "gpt-4o-mini"
