"""Robust per-slot baselines: median and MAD of the same hour on comparable days.

Seasonality: coding-agent traffic follows office hours and the working week,
so an entity's 10:00 on a Tuesday is compared with its 10:00 on its previous
weekdays, and a Saturday hour with previous weekend days (``slot_of``). Each
slot keeps one small record, a list of ``[day, spend_usd, requests, fired]``
entries (``day`` is the local date's ordinal, ``fired`` a bit mask of the
findings already made for that entity-slot-day), updated in place by each
event, so a late event lands in its own day whatever order events arrive in.

Days without an entry count as zero, from the day the entity was first seen:
a night that is always quiet has a baseline of zero, not of the rare busy
night. ``baseline_samples`` returns None while fewer than ``min_days`` days
of history exist, and detectors then only learn.

All functions are pure over plain JSON values (lists, numbers), the shape
faust tables keep and send to their changelog.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

#: Scale from MAD to a standard deviation for normally distributed data.
MAD_TO_SIGMA = 1.4826
DAY_SLOT = "day"


@dataclass(frozen=True, slots=True)
class Robust:
    """Median and MAD of baseline samples, and the threshold an observation must pass."""

    median: float
    mad: float
    threshold: float
    samples: int


def local_day_and_slot(at: datetime, zone: ZoneInfo) -> tuple[int, bool, int]:
    """(local date ordinal, is weekend, local hour) of an instant."""
    local = at.astimezone(zone)
    return local.date().toordinal(), local.weekday() >= 5, local.hour


def slot_of(weekend: bool, hour: int | None) -> str:
    """The slot name: ``wd09``/``we09`` for hours, ``wdday``/``weday`` for whole days."""
    return ("we" if weekend else "wd") + (DAY_SLOT if hour is None else f"{hour:02d}")


def is_weekend_day(day: int) -> bool:
    """Saturday or Sunday, from the ordinal alone (ordinal 1, 0001-01-01, was a Monday)."""
    return (day - 1) % 7 >= 5


def comparable_days(day: int, first_day: int, count: int) -> list[int]:
    """Up to ``count`` days before ``day`` of the same kind (weekday/weekend), newest first."""
    weekend = is_weekend_day(day)
    days: list[int] = []
    candidate = day - 1
    while candidate >= first_day and len(days) < count:
        if is_weekend_day(candidate) == weekend:
            days.append(candidate)
        candidate -= 1
    return days


def robust(samples: list[float], *, ratio: float, mad_k: float, floor: float) -> Robust:
    """Threshold = max(ratio x median, median + k x 1.4826 x MAD, floor)."""
    median = statistics.median(samples)
    mad = statistics.median([abs(value - median) for value in samples])
    threshold = max(ratio * median, median + mad_k * MAD_TO_SIGMA * mad, floor)
    return Robust(median, mad, threshold, len(samples))


def entry_for(record: list[list[Any]], day: int) -> list[Any]:
    """The record's entry for ``day``, appended (zeroed) if missing; kept sorted by day."""
    for entry in record:
        if entry[0] == day:
            return entry
    entry = [day, 0.0, 0, 0]
    record.append(entry)
    record.sort(key=lambda item: int(item[0]))
    return entry


def prune(record: list[list[Any]], newest_day: int, keep_days: int) -> None:
    """Drop entries older than the history any baseline can still ask for."""
    horizon = newest_day - int(keep_days * 3.5) - 7  # ``keep_days`` weekend days span 3.5x as long
    record[:] = [entry for entry in record if int(entry[0]) >= horizon]


def record_with_call(stored: Any, day: int, cost_usd: float,
                     keep_days: int) -> tuple[list[list[Any]], list[Any]]:
    """(record, entry): a copy of ``stored`` with one call added to ``day``'s entry, pruned.

    The copy is for the state rule (assign the value back whole, see ``state``);
    ``keep_days`` is ``prune``'s.
    """
    record: list[list[Any]] = [list(item) for item in stored or []]
    entry = entry_for(record, day)
    entry[1] = float(entry[1]) + cost_usd
    entry[2] = int(entry[2]) + 1
    prune(record, max(int(item[0]) for item in record), keep_days)
    return record, entry


def baseline_samples(record: list[list[Any]], day: int, first_day: int, *, days: int,
                     min_days: int, column: int) -> list[float] | None:
    """Values of ``column`` (1 spend, 2 requests) on comparable earlier days, zeros filled."""
    earlier = comparable_days(day, first_day, days)
    if len(earlier) < min_days:
        return None
    values = {int(entry[0]): float(entry[column]) for entry in record}
    return [values.get(candidate, 0.0) for candidate in earlier]


def day_start_utc(day: int, zone: ZoneInfo, hour: int | None = None) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a local day, or of one local hour of it."""
    local = datetime.combine(date.fromordinal(day), datetime.min.time(), zone)
    if hour is None:
        end = datetime.combine(date.fromordinal(day + 1), datetime.min.time(), zone)
        return local.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))
    start = local + timedelta(hours=hour)
    return start.astimezone(ZoneInfo("UTC")), (start + timedelta(hours=1)).astimezone(ZoneInfo("UTC"))
