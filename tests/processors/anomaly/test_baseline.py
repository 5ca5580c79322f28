"""Robust baselines: comparable days, zero filling, thresholds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from meterline.processors.anomaly.baseline import (
    baseline_samples,
    comparable_days,
    day_start_utc,
    local_day_and_slot,
    robust,
    slot_of,
)

MONDAY = date(2026, 9, 14).toordinal()


def test_weekdays_compare_with_weekdays_and_weekends_with_weekends() -> None:
    days = comparable_days(MONDAY, MONDAY - 30, 5)
    assert [date.fromordinal(d).weekday() for d in days] == [4, 3, 2, 1, 0]
    saturday = MONDAY - 2
    assert all(date.fromordinal(d).weekday() >= 5 for d in comparable_days(saturday, 0, 4))


def test_days_without_calls_count_as_zero_from_first_sight_only() -> None:
    record = [[MONDAY - 3, 4.0, 8, 0]]  # the Friday before
    samples = baseline_samples(record, MONDAY, MONDAY - 7, days=10, min_days=3, column=2)
    assert samples == [8.0, 0.0, 0.0, 0.0, 0.0]
    assert baseline_samples(record, MONDAY, MONDAY - 3, days=10, min_days=3, column=2) is None


def test_threshold_is_the_largest_of_ratio_spread_and_floor() -> None:
    assert robust([0, 0, 0, 0], ratio=5, mad_k=6, floor=120).threshold == 120
    quiet = robust([10, 12, 11, 9, 10], ratio=5, mad_k=6, floor=1)
    assert quiet.median == 10 and quiet.threshold == 50
    noisy = robust([10, 40, 5, 60, 20], ratio=2, mad_k=6, floor=1)
    assert noisy.threshold > 2 * noisy.median


def test_slots_and_windows_follow_the_local_clock() -> None:
    zone = ZoneInfo("Europe/Berlin")
    day, weekend, hour = local_day_and_slot(datetime(2026, 9, 14, 1, 30, tzinfo=UTC), zone)
    assert (weekend, hour, slot_of(weekend, hour), slot_of(True, None)) == (False, 3, "wd03",
                                                                            "weday")
    start, end = day_start_utc(day, zone, hour)
    assert (start, end) == (datetime(2026, 9, 14, 1, tzinfo=UTC),
                            datetime(2026, 9, 14, 2, tzinfo=UTC))
