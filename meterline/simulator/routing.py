"""The configured routing rules, applied to simulated traffic as the gateway applies them.

In topic mode the simulated calls never pass a gateway, so ``meterline
simulate`` routes them here, with the gateway's own ``RuleBook.decide``
(docs/routing.md): an envelope an ``enforce`` rule matches is served by the
rule's target (its ``provider`` and ``served_model``; the same usage), and one
a ``shadow`` rule matches is only marked. Either way it carries the
``Routing`` record a gateway would have written, so the month's chargeback
shows what the rules saved, and what the shadow rules would save.

A simulated call has no body: rules on ``has_tools``, ``has_images`` or
``max_tokens_at_most`` see a call without tools, images or a token limit, and
estimated tokens are read from the request's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from meterline.ingest.routing import Route, Router
from meterline.ingest.rules import CallFacts, RuleBook
from meterline.policy.rules import EgressPolicy
from meterline.schemas import Envelope, Settings


def route_envelopes(settings: Settings, envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
    """``envelopes`` as the configured rules route them (unchanged when there are none)."""
    router = Router(settings)
    book = RuleBook.from_settings(settings, router, EgressPolicy.from_settings(settings))
    for envelope in envelopes:
        provider = settings.providers.get(envelope.provider)
        if book is None or provider is None:
            yield envelope
            continue
        anthropic = envelope.surface.startswith("anthropic.")
        served = Route(envelope.provider, provider, envelope.served_model, anthropic)
        facts = CallFacts(tool=envelope.tool, repo=envelope.repo, team=envelope.team,
                          model=envelope.requested_model, request_bytes=envelope.request_bytes)
        route, record = book.decide(facts, anthropic, envelope.request_id, served)
        if record is None:
            yield envelope
            continue
        yield envelope.model_copy(update={"routing": record, "provider": route.provider_name,
                                          "served_model": route.served_model})
