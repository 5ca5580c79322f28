"""Budget periods cut in the budget's time zone, as the UTC hours of the rollup."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterline.reports import BudgetPeriod


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(("moment", "zone", "key", "start", "end"), [
    # Tokyo (UTC+9): 20:00 UTC on 31 Oct is already November there.
    (utc(2026, 10, 31, 20), "Asia/Tokyo", "2026-11", utc(2026, 10, 31, 15), utc(2026, 11, 30, 15)),
    (utc(2026, 10, 31, 14), "Asia/Tokyo", "2026-10", utc(2026, 9, 30, 15), utc(2026, 10, 31, 15)),
    # New York: October starts in summer time (UTC-4), December in winter time (UTC-5).
    (utc(2026, 11, 1, 3), "America/New_York", "2026-10", utc(2026, 10, 1, 4), utc(2026, 11, 1, 4)),
    (utc(2026, 11, 15), "America/New_York", "2026-11", utc(2026, 11, 1, 4), utc(2026, 12, 1, 5)),
    # Kolkata (UTC+5:30): local midnight is 18:30 UTC, floored to the hour.
    (utc(2026, 11, 15), "Asia/Kolkata", "2026-11", utc(2026, 10, 31, 18), utc(2026, 11, 30, 18)),
    (utc(2026, 12, 31, 23), "UTC", "2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
])
def test_month_in_zone(moment: datetime, zone: str, key: str, start: datetime,
                       end: datetime) -> None:
    period = BudgetPeriod.containing(moment, "month", zone)
    assert (period.key, period.start, period.end) == (key, start, end)


def test_iso_week_starts_on_local_monday() -> None:
    # Sunday 22:00 UTC is Monday 07:00 in Tokyo: the next ISO week there.
    period = BudgetPeriod.containing(utc(2026, 11, 15, 22), "week", "Asia/Tokyo")
    assert period.key == "2026-W47"
    assert (period.start, period.end) == (utc(2026, 11, 15, 15), utc(2026, 11, 22, 15))
    assert period.label() == "week of 2026-11-16"
    assert BudgetPeriod.containing(utc(2026, 11, 15, 22), "week", "UTC").key == "2026-W46"


def test_week_keys_use_the_iso_year() -> None:
    assert BudgetPeriod.containing(utc(2027, 1, 1, 12), "week", "UTC").key == "2026-W53"


def test_elapsed_and_duration() -> None:
    period = BudgetPeriod.containing(utc(2026, 11, 10), "month", "UTC")
    assert period.duration_h == 720
    assert period.elapsed_h(utc(2026, 11, 10)) == 216
    assert period.elapsed_h(utc(2026, 10, 1)) == 0
    assert period.elapsed_h(utc(2027, 1, 1)) == 720
    assert period.label() == "November 2026"


def test_naive_moments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        BudgetPeriod.containing(datetime(2026, 11, 1), "month", "UTC")
