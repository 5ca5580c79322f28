"""A user's share of the team's month-to-date spend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from meterline.processors.anomaly import TeamDetectors
from meterline.schemas import Anomaly, Settings
from tests.processors.anomaly.events import obs

START = datetime(2026, 9, 1, 8, tzinfo=UTC)


def _month(settings: Settings, heavy_share: float) -> list[Anomaly]:
    """Four users over September; ``heavy`` spends ``heavy_share`` of the total."""
    detectors = TeamDetectors(settings)
    state: dict[str, Any] = {}
    found: list[Anomaly] = []
    light = (1 - heavy_share) / 3
    for day in range(28):
        at = START + timedelta(days=day)
        for index, (user, share) in enumerate((("heavy", heavy_share), ("a", light),
                                               ("b", light), ("c", light))):
            found += [a for a in detectors.observe(
                obs(at + timedelta(minutes=index), user=user, key=f"key_{user}",
                    cost=100 * share), state) if a.kind == "budget_share"]
    return found


def test_user_at_sixty_percent_is_found_once_after_the_first_days() -> None:
    found = _month(Settings(), 0.6)
    assert len(found) == 1
    anomaly = found[0]
    assert (anomaly.entity, anomaly.severity) == ("heavy", "critical")
    assert 0.6 <= anomaly.observed < 0.7 and anomaly.expected == 0.25
    assert anomaly.detected_at >= START + timedelta(days=3) - timedelta(hours=8)
    assert anomaly.window_start == datetime(2026, 9, 1, tzinfo=UTC)
    assert anomaly.window_end == datetime(2026, 10, 1, tzinfo=UTC)


def test_even_spend_and_per_team_override_stay_quiet() -> None:
    assert _month(Settings(), 0.3) == []
    relaxed = Settings(anomalies={"teams": {"platform": {"budget_share": 0.7}}})
    assert _month(relaxed, 0.6) == []
    assert relaxed.anomalies.thresholds_for("platform").spike_ratio == 5.0


def test_small_teams_and_early_days_are_not_judged() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    found: list[Any] = []
    for day in range(10):
        found += detectors.observe(obs(START + timedelta(days=day), user="solo", cost=50), state)
    assert [a for a in found if a.kind == "budget_share"] == []
