"""Budget periods: a calendar month or an ISO week in a time zone, as UTC hours.

Spend comes from the ``spend_hourly`` rollup, whose hours are UTC. A period
starts at local midnight (the 1st of the month, or a Monday), which is a whole
UTC hour in every zone with a whole-hour offset, daylight-saving changes
included, so the period is cut exactly on the local day. In zones with a half-
or quarter-hour offset (Asia/Kolkata, Australia/Adelaide) the boundaries are
floored to the UTC hour, so up to 45 minutes of the previous local day count
in the new period; every check uses the same floored window, so alerts stay
consistent with each other.

The period's ``key`` (``2026-11``, ``2026-W45``) names it in the alert ledger:
a new period is a new key, so it starts with no alerts sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from meterline.schemas import BudgetPeriodKind


@dataclass(frozen=True, slots=True)
class BudgetPeriod:
    """One budget period: [start, end) as UTC hour boundaries, and how it was cut."""

    kind: BudgetPeriodKind
    first_day: date
    timezone: str
    start: datetime
    end: datetime

    @classmethod
    def containing(cls, moment: datetime, kind: BudgetPeriodKind, timezone: str) -> BudgetPeriod:
        """The period of ``kind`` that ``moment`` (timezone-aware) falls in, locally."""
        if moment.tzinfo is None:
            raise ValueError("moment must be timezone-aware")
        local_day = moment.astimezone(ZoneInfo(timezone)).date()
        if kind == "month":
            first = local_day.replace(day=1)
            following = (first + timedelta(days=32)).replace(day=1)
        else:
            first = local_day - timedelta(days=local_day.weekday())
            following = first + timedelta(days=7)
        return cls(kind, first, timezone, _utc_hour(first, timezone), _utc_hour(following, timezone))

    @property
    def key(self) -> str:
        """``2026-11`` for a month, ``2026-W45`` for an ISO week."""
        if self.kind == "month":
            return f"{self.first_day.year:04d}-{self.first_day.month:02d}"
        year, week, _ = self.first_day.isocalendar()
        return f"{year:04d}-W{week:02d}"

    @property
    def duration_h(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def elapsed_h(self, now: datetime) -> float:
        """Hours of the period before ``now``, between 0 and the period's length."""
        seconds = (min(max(now, self.start), self.end) - self.start).total_seconds()
        return seconds / 3600

    def label(self) -> str:
        """``November 2026`` or ``week of 2026-11-02``, for messages (locale-independent)."""
        if self.kind == "month":
            return f"{_MONTHS[self.first_day.month - 1]} {self.first_day.year}"
        return f"week of {self.first_day.isoformat()}"


def _utc_hour(day: date, timezone: str) -> datetime:
    local_midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))
    return local_midnight.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
