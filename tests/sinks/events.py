"""Event rows for sink tests, made by the real enrichment from synthetic envelopes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from meterline.processors import Directory, PriceBook
from meterline.processors.enrich import encode_event_row, event_row
from meterline.schemas import Envelope, Settings, Usage, new_request_id

MODELS = [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-5"), ("openai", "gpt-4o-mini"),
          ("openai", "acme-coder-33b")]
SETTINGS = Settings(teams=[{"name": "platform", "cost_centre": "CC-4100"},
                           {"name": "payments", "cost_centre": "CC-5200"}])
START = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)


def make_envelopes(count: int, seed: int = 1, start: datetime = START,
                   spread_hours: int = 5) -> list[Envelope]:
    rng = random.Random(seed)
    envelopes = []
    for i in range(count):
        provider, model = rng.choice(MODELS)
        at = start + timedelta(seconds=rng.randrange(spread_hours * 3600))
        envelopes.append(Envelope(
            request_id=new_request_id(int(at.timestamp() * 1000) + i % 1000),
            received_at=at, first_byte_at=at, done_at=at + timedelta(seconds=2),
            surface="openai.chat", provider=provider, requested_model=model, served_model=model,
            key_id="key_0123456789ab", user=rng.choice(("alice", "bob")),
            team=rng.choice(("platform", "payments")), repo=rng.choice(("acme/api", "acme/web")),
            tool=rng.choice(("claude-code", "cursor")), status=rng.choice((200, 200, 200, 429)),
            outcome="ok",
            usage=Usage(input_tokens=rng.randrange(1, 30_000),
                        cache_read_tokens=rng.choice((0, rng.randrange(1, 50_000))),
                        cache_write_1h_tokens=rng.choice((0, rng.randrange(1, 5_000)))
                        if provider == "anthropic" else 0,
                        output_tokens=rng.randrange(1, 4_000), source="provider")))
    return envelopes


def event_messages(envelopes: list[Envelope], book: PriceBook | None = None
                   ) -> list[tuple[str, bytes]]:
    """(request id, event JSON) pairs, exactly as the events topic carries them."""
    book = book or PriceBook(SETTINGS.prices,
                             {name: p.kind for name, p in SETTINGS.providers.items()})
    directory = Directory(SETTINGS)
    return [(e.request_id, encode_event_row(event_row(e, directory, book))) for e in envelopes]
