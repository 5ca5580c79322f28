"""Loading simulated traffic into a test's ClickHouse database through the real stages.

Envelopes go through the processors' own ``enrich`` (real price book) and the
sink's own ``EventWriter`` (real idempotent insert), so figures in report and
alert tests are the figures the pipeline would produce.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from meterline.processors import Directory, PriceBook, enrich
from meterline.schemas import Envelope, Event, Settings
from meterline.sinks import EventWriter

BATCH = 5000


def load_events(client: Any, database: str, settings: Settings,
                envelopes: Iterable[Envelope]) -> list[Event]:
    """Enrich and store ``envelopes``; returns the events, for independent sums."""
    directory = Directory(settings)
    book = PriceBook(settings.prices, {name: p.kind for name, p in settings.providers.items()})
    writer = EventWriter(client, database)
    events: list[Event] = []
    batch: list[tuple[str, bytes]] = []
    for envelope in envelopes:
        event = enrich(envelope, directory, book)
        events.append(event)
        batch.append((event.request_id, event.model_dump_json().encode()))
        if len(batch) >= BATCH:
            writer.write(batch)
            batch = []
    if batch:
        writer.write(batch)
    return events


#: One enforce and one shadow rule (extra configuration), for a simulated month whose
#: chargeback and dashboard show savings: routing saved, and would save.
ROUTING_RULES = {"routing_rules": [
    {"name": "cursor-sonnet-to-haiku", "mode": "enforce",
     "match": {"tools": ["cursor"], "models": ["claude-sonnet-4-5"]},
     "target": {"provider": "anthropic", "model": "claude-haiku-4-5"}},
    {"name": "opus-to-sonnet", "mode": "shadow", "match": {"models": ["claude-opus-4-1"]},
     "target": {"provider": "anthropic", "model": "claude-sonnet-4-5"}},
]}
