"""Routing rules in the gateway: which rules a call matches, and where it then goes.

``RuleBook`` is built once, at start, from ``settings.routing_rules``
(docs/routing.md); with no rules there is no book, and the proxy's only cost
is one ``is None`` test. Each rule is compiled into the checks its ``match``
names and nothing else: a rule on teams never looks at the body, and only a
rule on ``has_images`` or estimated tokens walks it. Its target is resolved
once per API style: a provider's fixed ``Route``, or the alias, whose first
target is then drawn for the call as any aliased call's is.

For each call, in rule order:

1. the first ``enforce`` rule that matches, whose target speaks the call's API
   shape and that the key and the egress policy allow for the call, changes the
   route (a target that may not serve the call is passed over, as fallback passes
   over one: the rule never turns a call that would have gone through into a
   refusal, which is also why it never sends a call across API shapes, where
   translation may refuse it);
2. the first ``shadow`` rule that matches, under the same conditions, is
   recorded with the target it would have chosen, and changes nothing.

The decision goes on the envelope as its ``Routing`` record, with where the
requested model would have gone without rules: the processors price the call
there too (``processors.savings``). ``decide`` is pure, so the simulator applies
the same rules to the traffic it makes up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import translate
from typing import Any

from meterline.policy.rules import EgressPolicy
from meterline.schemas import Routing, RoutingRule, RuleMatch, Settings

from .attribution import tool_from_user_agent
from .call import CallRecord
from .estimate import request_chars, tokens_for
from .fallback import permitted
from .routing import Route, Router
from .translate import crosses_shape

#: Content part types that carry an image: OpenAI chat, Anthropic, OpenAI responses.
_IMAGE_PARTS = frozenset({"image_url", "image", "input_image"})
#: Request fields that cap the tokens generated, per API.
_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What a rule may ask of a call; ``payload`` is the parsed body, None when unknown."""

    tool: str
    repo: str
    team: str
    model: str
    request_bytes: int
    payload: dict[str, Any] | None = None


Check = Callable[[CallFacts], bool]
#: Whether the call may be sent to a route (the key's lists, the egress policy).
Permits = Callable[[Route], bool]


def has_images(value: Any) -> bool:
    """Whether a request body holds an image content part, at any depth."""
    if isinstance(value, dict):
        return value.get("type") in _IMAGE_PARTS or any(
            has_images(item) for item in value.values() if isinstance(item, (dict, list)))
    if isinstance(value, list):
        return any(has_images(item) for item in value if isinstance(item, (dict, list)))
    return False


def has_tools(payload: dict[str, Any] | None) -> bool:
    return payload is not None and bool(payload.get("tools") or payload.get("functions"))


def max_tokens(payload: dict[str, Any] | None) -> int | None:
    """The output cap the call asks for, or None when it sets none."""
    for name in _MAX_TOKEN_FIELDS:
        value = payload.get(name) if payload else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def estimated_tokens(facts: CallFacts) -> int:
    """The prompt's tokens, four characters a token: of its text, or of its size unparsed."""
    if facts.payload is None:
        return tokens_for(facts.request_bytes)
    return tokens_for(request_chars(facts.payload))


def _patterns(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{translate(pattern)})" for pattern in patterns))


def compile_match(match: RuleMatch) -> tuple[Check, ...]:
    """The checks ``match`` names, cheapest first: names, then sizes, then the body."""
    checks: list[Check] = []
    if match.teams:
        teams = frozenset(match.teams)
        checks.append(lambda facts: facts.team in teams)
    if match.tools:
        tools = frozenset(match.tools)
        checks.append(lambda facts: facts.tool in tools)
    if match.repos:
        repos = _patterns(match.repos)
        checks.append(lambda facts: repos.match(facts.repo) is not None)
    if match.models:
        models = _patterns(match.models)
        checks.append(lambda facts: models.match(facts.model) is not None)
    if match.request_bytes_at_most is not None:
        most_bytes = match.request_bytes_at_most
        checks.append(lambda facts: facts.request_bytes <= most_bytes)
    if match.max_tokens_at_most is not None:
        most_out = match.max_tokens_at_most

        def _asks_at_most(facts: CallFacts) -> bool:
            asked = max_tokens(facts.payload)
            return asked is not None and asked <= most_out
        checks.append(_asks_at_most)
    if match.has_tools is not None:
        want_tools = match.has_tools
        checks.append(lambda facts: has_tools(facts.payload) == want_tools)
    if match.has_images is not None:
        want_images = match.has_images
        checks.append(lambda facts: has_images(facts.payload) == want_images)
    if match.estimated_tokens_at_most is not None:
        most_in = match.estimated_tokens_at_most
        checks.append(lambda facts: estimated_tokens(facts) <= most_in)
    return tuple(checks)


class _Rule:
    """A compiled rule: its checks, and its target for each API style."""

    __slots__ = ("alias", "checks", "mode", "name", "routes")

    def __init__(self, rule: RoutingRule, settings: Settings) -> None:
        self.name, self.mode = rule.name, rule.mode
        self.checks = compile_match(rule.match)
        target = rule.target
        #: The alias the target names, or "" when the target is a provider's model.
        self.alias = "" if target.provider else target.model
        if target.provider:
            provider = settings.providers[target.provider]
            fixed = {style: Route(target.provider, provider, target.model, style)
                     for style in (False, True)}
        else:
            first = settings.models[target.model].target_list()[0]
            provider = settings.providers[first.provider]
            fixed = {}
        #: Per API style: the fixed route, None for the alias, absent when it cannot serve it.
        self.routes: dict[bool, Route | None] = {
            style: fixed.get(style) for style in (False, True)
            if not crosses_shape(provider.kind, style)}

    def matches(self, facts: CallFacts) -> bool:
        return all(check(facts) for check in self.checks)


class RuleBook:
    """The configured rules, compiled; ``decide`` applies them to one call."""

    def __init__(self, settings: Settings, router: Router, policy: EgressPolicy) -> None:
        self._router = router
        self._policy = policy
        self._rules = tuple(_Rule(rule, settings) for rule in settings.routing_rules)

    @classmethod
    def from_settings(cls, settings: Settings, router: Router,
                      policy: EgressPolicy) -> RuleBook | None:
        """The book, or None when no rules are configured (the hot path then skips it)."""
        return cls(settings, router, policy) if settings.routing_rules else None

    def _target(self, rule: _Rule, anthropic_style: bool, request_id: str) -> Route | None:
        if anthropic_style not in rule.routes:
            return None
        fixed = rule.routes[anthropic_style]
        return fixed if fixed is not None else self._router.route(anthropic_style, rule.alias,
                                                                  request_id)

    def decide(self, facts: CallFacts, anthropic_style: bool, request_id: str, route: Route,
               permits: Permits | None = None) -> tuple[Route, Routing | None]:
        """The call's route after the rules, and their record (None when none matched)."""
        enforced: tuple[str, Route] | None = None
        shadow: tuple[str, Route] | None = None
        for rule in self._rules:
            if (enforced if rule.mode == "enforce" else shadow) is not None:
                continue
            if not rule.matches(facts):
                continue
            target = self._target(rule, anthropic_style, request_id)
            if target is None or (permits is not None and not permits(target)):
                continue  # a shadow rule records only what enforcing it would do
            if rule.mode == "shadow":
                shadow = rule.name, target
            else:
                enforced = rule.name, target
            if enforced is not None and shadow is not None:
                break
        if enforced is None and shadow is None:
            return route, None
        record = Routing(rule=enforced[0] if enforced else "", from_provider=route.provider_name,
                         from_model=route.served_model,
                         shadow_rule=shadow[0] if shadow else "",
                         shadow_provider=shadow[1].provider_name if shadow else "",
                         shadow_model=shadow[1].served_model if shadow else "")
        return (enforced[1] if enforced else route), record

    def apply(self, call: CallRecord, route: Route, anthropic_style: bool) -> Route:
        """``decide`` for a call in the gateway: records the decision on ``call``."""
        facts = CallFacts(tool=tool_from_user_agent(call.user_agent), repo=call.repo,
                          team=call.key.team, model=call.requested_model,
                          request_bytes=call.request_bytes, payload=call.payload)
        new, call.routing = self.decide(facts, anthropic_style, call.request_id, route,
                                        lambda target: permitted(call, target, self._policy)[0])
        return new
