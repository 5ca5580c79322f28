"""Dormant keys, first-seen models and tools, unpriced models, provider error bursts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from meterline.processors.anomaly import ProviderDetectors, TeamDetectors
from meterline.schemas import Settings
from tests.processors.anomaly.events import obs

START = datetime(2026, 9, 1, 10, tzinfo=UTC)


def test_key_back_after_a_long_silence() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    assert detectors.observe(obs(START, key="key_old"), state) == []
    assert detectors.observe(obs(START + timedelta(days=13), key="key_old"), state) == []
    found = detectors.observe(obs(START + timedelta(days=30), key="key_old"), state)
    assert [(a.kind, a.entity, a.observed) for a in found] == [("dormant_key", "key_old", 17.0)]


def test_first_seen_model_and_tool_only_after_the_learning_period() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    assert detectors.observe(obs(START), state) == []
    assert detectors.observe(obs(START + timedelta(days=2), model="gpt-5", tool="codex"),
                             state) == []
    found = detectors.observe(obs(START + timedelta(days=9), model="o3", tool="aider"), state)
    assert sorted((a.kind, a.entity) for a in found) == [("new_model", "o3"),
                                                         ("new_tool", "aider")]
    assert detectors.observe(obs(START + timedelta(days=9, hours=1), model="o3"), state) == []


def test_unpriced_model_is_reported_once_a_month() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    kinds: list[Any] = []
    for day in (0, 5, 20, 31):
        found = detectors.observe(obs(START + timedelta(days=day), model="acme-coder",
                                      unpriced=True, cost=0), state)
        kinds.append([(a.kind, a.window_start.month) for a in found
                      if a.kind == "unpriced_model"])
    assert kinds == [[("unpriced_model", 9)], [], [], [("unpriced_model", 10)]]


def test_provider_error_burst_in_a_five_minute_window() -> None:
    detectors = ProviderDetectors(Settings())
    state: dict[str, Any] = {}
    found = []
    for second in range(0, 300, 10):  # 30 calls, every third one fine
        found += detectors.observe(obs(START + timedelta(seconds=second),
                                       error=second % 30 != 0), state)
    assert [(a.kind, a.entity, a.team) for a in found] == [("error_burst", "anthropic", "")]
    assert found[0].window_start == START and found[0].observed >= 0.5
    quiet: list[Any] = []
    for second in range(300, 1800, 10):
        quiet += detectors.observe(obs(START + timedelta(seconds=second),
                                       error=second % 100 == 0), state)
    assert quiet == []
    assert len(state["e|anthropic"]["w"]) <= 12


def test_batch_tallies_find_the_same_burst_as_single_calls() -> None:
    from meterline.processors.anomaly import Observation
    from meterline.processors.anomaly.error_burst import ProviderTally, tally

    calls = [obs(START + timedelta(seconds=s), error=s % 30 != 0, request_id=f"r{s}")
             for s in range(0, 300, 10)]
    assert [Observation.from_wire(c.to_wire()) for c in calls] == calls
    per_batch = [tally(calls[i:i + 7], 5) for i in range(0, len(calls), 7)]
    assert [t.calls for batch in per_batch for t in batch] == [7, 7, 7, 7, 2]
    detectors = ProviderDetectors(Settings())
    state: dict[str, Any] = {}
    found = [a for batch in per_batch for t in batch
             for a in detectors.observe_tally(ProviderTally.from_wire(t.to_wire()), state)]
    one_by_one: dict[str, Any] = {}
    expected = [a for c in calls for a in detectors.observe(c, one_by_one)]
    assert [a.anomaly_id for a in found] == [a.anomaly_id for a in expected]
    assert found[0].detected_at == calls[20].at  # the tally in which the 20th call fell
