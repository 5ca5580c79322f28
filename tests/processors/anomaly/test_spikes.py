"""Spend and request spikes against the entity's own hour-of-day baseline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from meterline.processors.anomaly import TeamDetectors
from meterline.schemas import Anomaly, Settings
from tests.processors.anomaly.events import obs

START = datetime(2026, 9, 1, tzinfo=UTC)  # a Tuesday; Settings default zone is UTC


def _normal_weeks(detectors: TeamDetectors, state: dict[str, Any], days: int) -> list[Anomaly]:
    """``days`` of office hours: 10 calls an hour at $0.50 for two keys, quiet nights."""
    found: list[Anomaly] = []
    for day in range(days):
        base = START + timedelta(days=day)
        if base.weekday() >= 5:
            continue
        for hour in range(9, 18):
            for minute in range(0, 60, 6):
                for user, key in (("alice", "key_a"), ("bob", "key_b")):
                    at = base + timedelta(hours=hour, minutes=minute)
                    found += detectors.observe(obs(at, user=user, key=key), state)
    return found


def test_normal_office_hours_raise_nothing() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    assert _normal_weeks(detectors, state, 21) == []


def test_looping_agent_at_3am_is_one_request_spike_and_one_spend_spike() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    _normal_weeks(detectors, state, 14)
    night = START + timedelta(days=14, hours=3)  # Tuesday 03:00
    found: list[Anomaly] = []
    for second in range(0, 3600, 9):  # 400 calls in the hour
        found += detectors.observe(obs(night + timedelta(seconds=second), cost=0.2), state)
    kinds = sorted((a.kind, a.entity_kind) for a in found)
    # $80 in the hour also passes the key's absolute ceiling ($50): a finding of its own kind
    assert kinds == [("request_spike", "key"), ("spend_ceiling", "key"), ("spend_spike", "key")]
    request = next(a for a in found if a.kind == "request_spike")
    assert request.observed == 121 and request.expected == 0 and request.threshold == 120
    assert request.window_start == night and request.window_end == night + timedelta(hours=1)
    assert request.detected_at < night + timedelta(minutes=20)  # caught within the hour
    assert request.evidence["user"] == "alice"


def test_ten_times_team_day_is_found_on_the_day() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    _normal_weeks(detectors, state, 14)
    day = START + timedelta(days=14)
    found = []
    for hour in range(9, 18):
        for second in range(0, 3600, 36):
            at = day + timedelta(hours=hour, seconds=second)
            found += detectors.observe(obs(at, cost=1.0), state)
    team_day = [a for a in found if a.entity_kind == "team" and a.evidence["span"] == "day"]
    assert len(team_day) == 1
    assert team_day[0].window_start == day and team_day[0].expected == 90.0


def test_replay_out_of_order_yields_the_same_ids() -> None:
    events = []
    for day in range(15):
        for hour in (10, 11):
            events.append(obs(START + timedelta(days=day, hours=hour), cost=1.0))
    events += [obs(START + timedelta(days=15, hours=3, seconds=s), cost=0.5)
               for s in range(0, 3600, 20)]
    first = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    in_order = {a.anomaly_id for e in events for a in first.observe(e, state)}
    state2: dict[str, Any] = {}
    shuffled = events[:10] + events[20:] + events[10:20]
    second = TeamDetectors(Settings())
    out_of_order = {a.anomaly_id for e in shuffled for a in second.observe(e, state2)}
    assert in_order and in_order == out_of_order
