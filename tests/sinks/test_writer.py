"""The idempotent writer and the rollup it feeds: each request id counted once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from meterline.processors.enrich import encode_event_row
from meterline.schemas import ClickHouseSettings
from meterline.sinks import EventWriter, connect, reconcile, repair_recent, repair_rollups
from tests.sinks.events import START, event_messages, make_envelopes

pytestmark = pytest.mark.store


def test_replayed_and_overlapping_batches_store_each_id_once(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    writer = EventWriter(client, database)
    messages = event_messages(make_envelopes(300))
    assert writer.write(messages[:200]) == 200
    assert writer.write(messages[:200]) == 0  # a crash before the commit: the batch again
    assert writer.write(messages[150:] + messages[150:160]) == 100  # overlap + in-batch repeats
    books = reconcile(client, database)
    assert (books.event_rows, books.distinct_request_ids) == (300, 300)
    assert books.balanced()
    assert books.rollups["spend_hourly"].requests == 300
    assert books.events_cost_usd > 0 and books.unpriced_requests > 0


def test_repair_heals_a_double_counted_insert_and_is_idempotent(
        clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    messages = event_messages(make_envelopes(120, seed=2))
    EventWriter(client, database).write(messages)
    before = reconcile(client, database)
    # What the writer prevents, done by hand: the same rows inserted again, so the
    # view adds them to the rollup a second time.
    client.raw_insert(f"{database}.events", insert_block=b"\n".join(v for _, v in messages[:40]),
                      fmt="JSONEachRow", settings={"date_time_input_format": "best_effort"})
    broken = reconcile(client, database)
    assert not broken.balanced()
    assert broken.rollups["spend_hourly"].requests == 160
    assert broken.distinct_request_ids == 120
    assert repair_recent(client, database) > 0
    healed = reconcile(client, database)
    assert healed.balanced()
    assert healed.rollups["spend_hourly"].cost_usd == before.events_cost_usd
    assert repair_rollups(client, database, START, START.replace(hour=23)) == 0


def test_repair_restores_a_rollup_insert_lost_in_a_crash(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    messages = event_messages(make_envelopes(80, seed=3))
    EventWriter(client, database).write(messages)
    expected = reconcile(client, database).events_cost_usd
    # A crash between the events part and the view's part: the rollup lacks a batch.
    client.command(f"TRUNCATE TABLE {database}.spend_hourly")
    assert reconcile(client, database).rollups["spend_hourly"].cost_usd == Decimal(0)
    repair_recent(client, database)
    healed = reconcile(client, database)
    assert healed.balanced() and healed.rollups["spend_hourly"].cost_usd == expected
    rows = client.query(f"SELECT sum(requests), sum(errors) FROM {database}.spend_hourly "
                        "GROUP BY team ORDER BY team").result_rows
    direct = client.query(f"SELECT count(), countIf(status >= 400) FROM {database}.events FINAL "
                          "GROUP BY team ORDER BY team").result_rows
    assert rows == direct


def test_a_batch_larger_than_a_query_can_spell_is_deduplicated(
        clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    writer = EventWriter(client, database)
    messages = event_messages(make_envelopes(12_000, seed=4))
    assert writer.write(messages[:8_000]) == 8_000
    assert writer.write(messages) == 4_000  # 12,000 ids: an IN list would exceed max_query_size
    writer.close()
    assert reconcile(client, database).distinct_request_ids == 12_000


def test_costs_in_exponent_form_are_stored_exactly(clickhouse: tuple[Any, str]) -> None:
    """``encode_event_row`` writes a decimal as ``str`` spells it ("7.4606E-8", "0E-12"):
    the store reads every spelling to the last of its twelve places."""
    client, database = clickhouse
    costs = [Decimal("7.4606E-8"), Decimal("0E-12"), Decimal("1E-12"),
             Decimal("2280870822931.034488161489"), Decimal("0.051000000000")]
    messages = []
    for (request_id, value), cost in zip(event_messages(make_envelopes(len(costs), seed=9)), costs,
                                         strict=True):
        row = orjson.loads(value)
        row.update(input_cost_usd=cost, output_cost_usd=Decimal(0), cost_usd=cost)
        messages.append((request_id, encode_event_row(row)))
    assert b'"7.4606E-8"' in messages[0][1]  # the spelling under test reached the store
    EventWriter(client, database).write(messages)
    stored = client.query(f"SELECT request_id, toString(cost_usd) FROM {database}.events"
                          ).result_rows
    assert {Decimal(cost) for _, cost in stored} == set(costs)
    assert Decimal(client.query(f"SELECT toString(sum(cost_usd)) FROM {database}.events"
                                ).result_rows[0][0]) == sum(costs)


def test_the_embedded_writer_parses_on_one_thread_and_the_reader_is_untouched(
        clickhouse: tuple[Any, str], chdb_settings: ClickHouseSettings) -> None:
    """The in-process engine shares the machine's cores with the pipeline: its writing
    sessions parse inserts on one thread (``client.writer_settings``); a read-only
    session keeps the engine's default, and either way the rows and the rollup agree."""
    client, database = clickhouse
    setting = "SELECT getSetting('input_format_parallel_parsing')"
    assert client.raw_query(setting, fmt="TabSeparated").strip() == b"false"
    reader = connect(chdb_settings, readonly=True)
    assert reader.raw_query(setting, fmt="TabSeparated").strip() == b"true"
    messages = event_messages(make_envelopes(500, seed=6))
    assert EventWriter(client, database).write(messages) == 500
    books = reconcile(client, database)
    assert books.balanced() and books.rollups["spend_hourly"].requests == 500
