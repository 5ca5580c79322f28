"""Routing rules: send some calls to a cheaper target, or first only record that a rule would.

A rule (``routing_rules`` in ``meterline.yaml``, docs/routing.md) names the
calls it matches and the target they should go to. In ``shadow`` mode, where
every rule starts, the gateway changes nothing: it records on the envelope
which rule matched and where it would have sent the call, and the processors
price that target for the same usage, so a report shows what the rule would
save before anyone turns it on. In ``enforce`` mode the call goes to the target.

This module is the rules' contract and their checks at start: a rule naming a
provider or alias that does not exist is refused there, with the rule's name,
rather than failing the calls it matches. Matching is ``ingest.rules``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .kafka_settings import _Section

RuleMode = Literal["shadow", "enforce"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class RuleMatch(_Section):
    """What a call must be for the rule to apply: every condition given must hold.

    The name lists (``tools``, ``repos``, ``teams``, ``models``) match when the
    call's value is one of them; ``repos`` and ``models`` take shell-style
    patterns (``acme/*``, ``claude-opus-*``). ``models`` is the model the call
    asked for. The size limits read the request as it came: its bytes, its
    estimated prompt tokens (four characters a token), and the ``max_tokens``
    it asks for (a call that sets no limit does not match ``max_tokens_at_most``).
    """

    tools: list[str] = Field(default_factory=list)
    repos: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    request_bytes_at_most: int | None = Field(None, ge=0)
    estimated_tokens_at_most: int | None = Field(None, ge=0)
    has_tools: bool | None = None
    has_images: bool | None = None
    max_tokens_at_most: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> RuleMatch:
        if all(value is None or value == [] for value in self.model_dump().values()):
            raise ValueError("match needs at least one condition (tools, repos, teams, models, "
                             "request_bytes_at_most, estimated_tokens_at_most, has_tools, "
                             "has_images, max_tokens_at_most)")
        return self


class RuleTarget(_Section):
    """Where matched calls go: an alias of ``models``, or ``provider`` and the model it serves."""

    model: str = Field(min_length=1)
    provider: str = ""


class RoutingRule(_Section):
    """One rule: its name (the ledger's ``routing_rule``), mode, match and target."""

    name: str
    mode: RuleMode = "shadow"
    match: RuleMatch
    target: RuleTarget

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-', starting with a "
                             "letter or digit")
        return value


def check_routing_rules(rules: list[RoutingRule], aliases: set[str], providers: set[str]) -> None:
    """Refuse duplicate names and targets that do not exist, naming the rule."""
    seen: set[str] = set()
    for rule in rules:
        where = f"routing_rules.{rule.name}"
        if rule.name in seen:
            raise ValueError(f"{where}: a second rule of this name; rule names must be unique")
        seen.add(rule.name)
        target = rule.target
        if target.provider and target.provider not in providers:
            raise ValueError(f"{where}: target provider {target.provider!r} is not configured "
                             f"(providers: {', '.join(sorted(providers)) or 'none'})")
        if not target.provider and target.model not in aliases:
            raise ValueError(f"{where}: target {target.model!r} is not an alias in models "
                             f"({', '.join(sorted(aliases)) or 'none configured'}); name one, or "
                             "give the target a provider too")
