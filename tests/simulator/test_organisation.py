"""The simulated organisation: reproducible, realistic in shape, and fully priced but for the
deliberate unpriced and unattributed traffic."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from meterline.schemas import Settings
from meterline.simulator.organisation import Organisation
from tests.traffic import load_events

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 10, 8, tzinfo=UTC)


def test_same_seed_same_traffic() -> None:
    first = list(Organisation.demo(seed=3).envelopes(START, END))
    second = list(Organisation.demo(seed=3).envelopes(START, END))
    assert [e.request_id for e in first] == [e.request_id for e in second]
    assert first == second
    other = list(Organisation.demo(seed=4).envelopes(START, END))
    assert [e.request_id for e in other] != [e.request_id for e in first]


def test_traffic_has_office_hours_weekends_tools_and_caching() -> None:
    org = Organisation.demo(seed=3)
    envelopes = list(org.envelopes(START, END))
    zone = ZoneInfo(org.timezone)
    assert envelopes == sorted(envelopes, key=lambda e: e.received_at)
    local_hours = Counter(e.received_at.astimezone(zone).hour for e in envelopes)
    assert local_hours[10] > 10 * max(local_hours[3], 1)
    weekday = Counter(e.received_at.astimezone(zone).weekday() for e in envelopes)
    assert weekday[2] > 5 * max(weekday[5], 1)  # Wednesday vs Saturday
    assert {e.tool for e in envelopes} >= {"claude-code", "codex", "cursor", "openai-python"}
    claude = [e for e in envelopes if e.provider == "anthropic" and e.status == 200]
    assert sum(e.usage.cache_read_tokens for e in claude) > sum(e.usage.input_tokens for e in claude)
    assert any(e.usage.cache_write_1h_tokens for e in claude)
    assert any(e.usage.reasoning_tokens for e in envelopes)
    assert any(e.status >= 400 for e in envelopes)


@pytest.mark.store
def test_loaded_month_prices_everything_but_the_deliberate_buckets(
        clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    org = Organisation.demo(seed=5)
    settings = Settings(**org.settings_overrides())
    events = load_events(client, database, settings, org.envelopes(START, END))
    unpriced = {e.served_model for e in events if e.unpriced}
    assert unpriced == {"acme-coder-34b"}
    assert {e.team for e in events if not e.attributed} == {"contractors"}
    stored = client.query(f"SELECT count(), sum(cost_usd) FROM {database}.events").result_rows[0]
    assert stored[0] == len(events)
    assert stored[1] == sum((e.cost_usd for e in events), Decimal(0)) > 0
