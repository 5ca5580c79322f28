"""Re-pricing a past range: new versions, rollup deltas, no double counting, re-runnable."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest

from meterline.processors import PriceBook
from meterline.processors.reprice import reprice_row
from meterline.schemas import PriceOverride
from meterline.sinks import EventWriter, reconcile, reprice_range
from tests.sinks.events import START, event_messages, make_envelopes

pytestmark = pytest.mark.store

HALF_PRICE_SONNET = PriceOverride(model="claude-sonnet-4-5", effective_from="2026-11-10",
                                  input_per_mtok=Decimal(0), output_per_mtok=Decimal(0),
                                  discount_factor=Decimal("0.5"))
SELF_HOSTED = PriceOverride(model="acme-coder-33b", effective_from="2026-01-01",
                            input_per_mtok=Decimal("0.20"), output_per_mtok=Decimal("0.60"))


def sonnet_cost(client: Any, database: str) -> Decimal:
    value = client.query(f"SELECT sum(cost_usd) FROM {database}.events FINAL "
                         "WHERE served_model = 'claude-sonnet-4-5'").result_rows[0][0]
    return Decimal(value)


def test_reprice_moves_cost_to_new_versions_and_rollups_follow(
        clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    writer = EventWriter(client, database)
    writer.write(event_messages(make_envelopes(400, seed=5, spread_hours=30)))
    before = reconcile(client, database)
    sonnet_before = sonnet_cost(client, database)
    book = PriceBook([HALF_PRICE_SONNET, SELF_HOSTED], {"anthropic": "anthropic",
                                                        "openai": "openai"})
    end = START + timedelta(hours=30)
    result = reprice_range(client, database, START, end, partial(reprice_row, book=book),
                           lock=threading.RLock(), price_book_sha256="test")
    assert result.events_examined == 400
    assert result.events_repriced > 0 and result.rollup_delta_rows > 0
    after = reconcile(client, database)
    assert after.balanced(), after
    assert after.distinct_request_ids == 400 and after.event_rows == 400 + result.events_repriced
    assert after.rollups["spend_hourly"].requests == 400
    assert sonnet_cost(client, database) == sonnet_before / 2
    assert after.unpriced_requests == 0 < before.unpriced_requests  # the self-hosted price
    assert after.events_cost_usd == before.events_cost_usd + (
        result.new_cost_usd - result.old_cost_usd)

    again = reprice_range(client, database, START, end, partial(reprice_row, book=book),
                          lock=threading.RLock())
    assert (again.events_repriced, again.rollup_delta_rows) == (0, 0)
    assert reconcile(client, database) == after
    runs = client.query(f"SELECT state, events_repriced FROM {database}.reprice_runs FINAL "
                        "ORDER BY started_at").result_rows
    assert runs == [("done", result.events_repriced), ("done", 0)]


def test_reprice_of_part_of_a_range_leaves_the_rest_alone(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    EventWriter(client, database).write(event_messages(make_envelopes(200, seed=6,
                                                                      spread_hours=48)))
    book = PriceBook([HALF_PRICE_SONNET], {"anthropic": "anthropic", "openai": "openai"})
    first_day = START.replace(hour=0) + timedelta(days=1)
    outside = reconcile(client, database, first_day, first_day + timedelta(days=2))
    reprice_range(client, database, START, first_day, partial(reprice_row, book=book),
                  lock=threading.RLock())
    assert reconcile(client, database, first_day, first_day + timedelta(days=2)) == outside
    assert reconcile(client, database).balanced()
