"""The fallback chain in the ledger: ``attempts`` and ``fallbacks`` on events (migration 0090).

A 1.3 envelope's failed attempts become JSON on its row and cost nothing; a 1.2
envelope (no attempts) and a row written without the columns read as no
fallback; re-pricing keeps the chain.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from meterline.processors import Directory, PriceBook
from meterline.processors.enrich import encode_event_row, enrich, event_row
from meterline.processors.reprice import reprice_row
from meterline.schemas import Attempt, Envelope, PriceOverride
from meterline.sinks import EventWriter
from tests.harness import REPO_ROOT
from tests.sinks.events import SETTINGS, make_envelopes

pytestmark = pytest.mark.store

FAILED = [Attempt(provider="anthropic", model="claude-sonnet-4-5", status=529,
                  error_class="http_529", upstream_ms=12.5),
          Attempt(provider="anthropic-eu", model="claude-sonnet-4-5", error_class="breaker_open")]


def served_by_backup(envelope: Envelope) -> Envelope:
    return envelope.model_copy(update={"provider": "anthropic", "served_model": "claude-haiku-4-5",
                                       "attempts": FAILED})


def book() -> PriceBook:
    return PriceBook([], {name: p.kind for name, p in SETTINGS.providers.items()})


def test_attempts_are_json_on_the_event_and_priced_at_nothing() -> None:
    plain, = make_envelopes(1)
    backed = served_by_backup(plain)
    event = enrich(backed, Directory(SETTINGS), book())
    assert event.fallbacks == 2 and orjson.loads(event.attempts) == [a.model_dump() for a in FAILED]
    # the cost is the serving target's usage at the serving model's price, nothing more
    alone = enrich(backed.model_copy(update={"attempts": []}), Directory(SETTINGS), book())
    assert (event.cost_usd, event.served_model) == (alone.cost_usd, "claude-haiku-4-5")
    # an envelope from before 1.3 has no attempts: no fallback
    old = orjson.loads(plain.model_dump_json())
    del old["attempts"]
    old["schema_version"] = "1.2"
    legacy = enrich(Envelope.model_validate(old), Directory(SETTINGS), book())
    assert (legacy.attempts, legacy.fallbacks) == ("[]", 0)


def test_the_chain_is_stored_read_back_and_kept_by_repricing(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    first, second = make_envelopes(2, seed=7)
    backed = served_by_backup(first)
    rows = [event_row(backed, Directory(SETTINGS), book()), event_row(second, Directory(SETTINGS),
                                                                      book())]
    legacy = {name: value for name, value in rows[1].items()
              if name not in ("attempts", "fallbacks")}  # a row from a worker before 0090
    EventWriter(client, database).write([(backed.request_id, encode_event_row(rows[0])),
                                         (second.request_id, encode_event_row(legacy))])
    stored = {row[0]: row[1:] for row in client.query(
        f"SELECT request_id, fallbacks, attempts FROM {database}.events").result_rows}
    assert stored[second.request_id] == (0, "[]")
    fallbacks, attempts = stored[backed.request_id]
    assert fallbacks == 2 and orjson.loads(attempts)[0]["status"] == 529
    # re-pricing writes the next version of the whole row, chain included
    row = client.query(f"SELECT * FROM {database}.events WHERE request_id = "
                       f"'{backed.request_id}'").named_results().__next__()
    cheaper = PriceBook([PriceOverride(model="claude-haiku-4-5", input_per_mtok=1,
                                       output_per_mtok=1)],
                        {name: p.kind for name, p in SETTINGS.providers.items()})
    repriced = reprice_row(row, cheaper)
    assert repriced is not None
    assert (repriced["attempts"], repriced["fallbacks"]) == (attempts, 2)


def test_the_routing_docs_query_reads_the_chain(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    recent = make_envelopes(20, seed=3, start=datetime.now(UTC) - timedelta(hours=2),
                            spread_hours=1)
    envelopes = [served_by_backup(e) if i % 4 == 0 else e for i, e in enumerate(recent)]
    EventWriter(client, database).write([
        (e.request_id, encode_event_row(event_row(e, Directory(SETTINGS), book())))
        for e in envelopes])
    sql, = [query for query in re.findall(r"```sql\n(.*?)```",
                                          (REPO_ROOT / "docs/routing.md").read_text(), re.S)
            if "fallbacks" in query]
    rows = client.query(sql.replace("FROM events", f"FROM {database}.events")).result_rows
    assert sorted((provider, reason, calls) for provider, reason, calls, _ in rows) == [
        ("anthropic", "http_529", 5), ("anthropic-eu", "breaker_open", 5)]
