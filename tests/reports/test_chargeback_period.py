"""Chargeback months: local calendar months as UTC hours, across DST and year ends."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from meterline.reports.chargeback_period import Month, month_before


def test_parse_and_format() -> None:
    assert str(Month.parse("2026-10")) == "2026-10"
    assert Month.parse("2026-01").previous() == Month(2025, 12)
    assert Month.parse("2026-12").next() == Month(2027, 1)
    assert Month.parse("2026-10").label() == "October 2026"


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-10", "", "2026/10"])
def test_bad_months_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        Month.parse(text)


def test_window_follows_the_zone_and_daylight_saving() -> None:
    # Berlin: October starts in summer time (UTC+2) and ends in winter time (UTC+1).
    window = Month.parse("2026-10").window("Europe/Berlin")
    assert window.start == datetime(2026, 9, 30, 22, tzinfo=UTC)
    assert window.end == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert len(window.days()) == 31
    assert window.days()[0] == date(2026, 10, 1)
    utc = Month.parse("2026-02").window("UTC")
    assert (utc.start, utc.end) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def test_half_hour_zone_floors_to_the_utc_hour_and_keeps_the_month_days() -> None:
    window = Month.parse("2026-03").window("Asia/Kolkata")
    assert window.start == datetime(2026, 2, 28, 18, tzinfo=UTC)
    assert window.days()[0] == date(2026, 3, 1) and len(window.days()) == 31
    assert window.clamp(date(2026, 2, 28)) == date(2026, 3, 1)


def test_the_scheduled_run_reports_the_month_that_ended_locally() -> None:
    # 23:30 UTC on 31 October is already 1 November in Berlin: report October.
    assert month_before(datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "Europe/Berlin") == Month(2026, 10)
    assert month_before(datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "UTC") == Month(2026, 9)
    assert month_before(datetime(2027, 1, 1, 6, tzinfo=UTC), "UTC") == Month(2026, 12)
