"""The simulator routes its made-up traffic with the configured rules, as a gateway would."""

from __future__ import annotations

from datetime import UTC, datetime

from meterline.schemas import Envelope, Routing, Settings
from meterline.simulator.organisation import Organisation
from meterline.simulator.routing import route_envelopes

RULES = {"routing_rules": [
    {"name": "cursor-sonnet-to-haiku", "mode": "enforce",
     "match": {"tools": ["cursor"], "models": ["claude-sonnet-4-5"]},
     "target": {"provider": "anthropic", "model": "claude-haiku-4-5"}},
    {"name": "small-prompts", "mode": "shadow", "match": {"estimated_tokens_at_most": 5_000},
     "target": {"provider": "openai", "model": "gpt-4o-mini"}},
]}


ORG = Organisation.demo(seed=3, timezone="UTC")
SETTINGS = Settings(**{**ORG.settings_overrides(), **RULES})


def week() -> list[Envelope]:
    return list(ORG.envelopes(datetime(2026, 10, 5, tzinfo=UTC),
                              datetime(2026, 10, 12, tzinfo=UTC), volume=0.3))


def test_without_rules_the_traffic_is_unchanged() -> None:
    envelopes = week()
    assert list(route_envelopes(Settings(**ORG.settings_overrides()), envelopes)) == envelopes


def test_an_enforce_rule_serves_its_calls_on_the_target_and_a_shadow_rule_only_marks() -> None:
    envelopes = week()
    routed = list(route_envelopes(SETTINGS, envelopes))
    assert len(routed) == len(envelopes)
    for before, after in zip(envelopes, routed, strict=True):
        assert (after.request_id, after.usage) == (before.request_id, before.usage)
        enforced = before.tool == "cursor" and before.requested_model == "claude-sonnet-4-5"
        # the shadow target speaks OpenAI's API only; a simulated call's tokens are its bytes / 4
        shadowed = (before.request_bytes // 4 <= 5_000
                    and not before.surface.startswith("anthropic."))
        if not (enforced or shadowed):
            assert after == before
            continue
        assert after.routing == Routing(
            rule="cursor-sonnet-to-haiku" if enforced else "", from_provider=before.provider,
            from_model=before.served_model, shadow_rule="small-prompts" if shadowed else "",
            shadow_provider="openai" if shadowed else "",
            shadow_model="gpt-4o-mini" if shadowed else "")
        served = ("anthropic", "claude-haiku-4-5") if enforced else (before.provider,
                                                                      before.served_model)
        assert (after.provider, after.served_model) == served
    assert any(e.routing is not None and e.routing.rule for e in routed)
    assert any(e.routing is not None and e.routing.shadow_rule for e in routed)
