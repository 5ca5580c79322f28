"""The chargeback month: a calendar month in the organisation's time zone, as UTC hours.

Reports read the ``spend_hourly`` rollup, whose hours are UTC. A local month
starts and ends at local midnight, which is a whole UTC hour in every zone
with a whole-hour offset (daylight-saving changes included), so the month is
cut exactly. In zones with a half- or quarter-hour offset the boundaries are
floored to the UTC hour, and both the report and its reconciliation use the
same floored window, so they still agree with each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month, e.g. ``Month.parse("2026-10")``."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        match = _MONTH.match(text.strip())
        if match is None:
            raise ValueError(f"not a month: {text!r} (expected YYYY-MM)")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def containing(cls, moment: datetime, timezone: str) -> Month:
        local = moment.astimezone(ZoneInfo(timezone))
        return cls(local.year, local.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def label(self) -> str:
        """``October 2026``: for titles, independent of the process locale."""
        return f"{_NAMES[self.month - 1]} {self.year}"

    def window(self, timezone: str) -> Window:
        """[start, end) of the month in ``timezone``, as UTC whole hours."""
        zone = ZoneInfo(timezone)

        def utc_hour(month: Month) -> datetime:
            local = datetime(month.year, month.month, 1, tzinfo=zone)
            return local.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

        return Window(utc_hour(self), utc_hour(self.next()), timezone, self.first_day,
                      self.next().first_day)


@dataclass(frozen=True, slots=True)
class Window:
    """Half-open UTC interval [start, end) on hour boundaries, and the local days it covers."""

    start: datetime
    end: datetime
    timezone: str
    first_day: date
    end_day: date

    def days(self) -> list[date]:
        """The local calendar days of the month, in order."""
        return [date.fromordinal(day) for day in range(self.first_day.toordinal(),
                                                         self.end_day.toordinal())]

    def clamp(self, day: date) -> date:
        """A day inside the month: an hour straddling a floored boundary counts to its edge."""
        last = date.fromordinal(self.end_day.toordinal() - 1)
        return min(max(day, self.first_day), last)


_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


def month_before(moment: datetime, timezone: str) -> Month:
    """The month that ended before ``moment``'s local month: what a run on the 1st reports."""
    return Month.containing(moment, timezone).previous()
