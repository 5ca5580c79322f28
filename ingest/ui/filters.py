"""The dashboard's filters: parsed from the query string, validated, bound into SQL.

Every page takes the same filters (``from``, ``to``, ``team``, ``repo``,
``tool``, ``model``). They are validated here, before any SQL is written, so a
malformed date or an impossible range becomes a ``BadFilter`` with a sentence a
person can act on (rendered on the page with status 400), never a ClickHouse
error or a traceback.

Days are calendar days in the configured ``timezone``; the rollup's hours are
UTC, so a day is cut with ``toDateTime({day_from:String}, {tz:String})``.
Values never enter SQL text: the conditions name query parameters
(``{team:String}``) and ``Filters.params`` holds their values, which the store
binds server-side (``param_team=...``), so no filter can change what a query
means. Column names are written by this module only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

#: Longest range a page may ask for; longer ranges are refused rather than scanned.
MAX_RANGE_DAYS = 366


class BadFilter(ValueError):
    """A filter value a person typed or edited that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Filters:
    """One page's selection: an inclusive range of local days plus optional dimensions."""

    start: date
    end: date
    timezone: str
    team: str = ""
    repo: str = ""
    tool: str = ""
    model: str = ""

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    @property
    def is_month_to_date(self) -> bool:
        """True when the range is this month up to today (the overview then forecasts)."""
        today = datetime.now(ZoneInfo(self.timezone)).date()
        return self.start == today.replace(day=1) and self.end == today

    def with_team(self, team: str) -> Filters:
        return replace(self, team=team)

    def query_string(self, **changes: str) -> str:
        """This selection as a URL query string, with ``changes`` applied (used by links)."""
        params = {"from": self.start.isoformat(), "to": self.end.isoformat(), "team": self.team,
                  "repo": self.repo, "tool": self.tool, "model": self.model, **changes}
        return urlencode({name: value for name, value in params.items() if value})

    def params(self) -> dict[str, str]:
        """The bound values every condition of this module refers to, by parameter name."""
        after = self.end + timedelta(days=1)
        return {"tz": self.timezone, "day_from": f"{self.start.isoformat()} 00:00:00",
                "day_after": f"{after.isoformat()} 00:00:00", "team": self.team,
                "repo": self.repo, "tool": self.tool, "model": self.model}

    def hour_bounds(self) -> str:
        """SQL condition on ``hour`` (the rollups) covering the selected local days."""
        return self.bounds("hour")

    def bounds(self, column: str) -> str:
        return (f"{column} >= toDateTime({{day_from:String}}, {{tz:String}}) "
                f"AND {column} < toDateTime({{day_after:String}}, {{tz:String}})")

    def rollup_where(self, *, use_team: bool = True) -> str:
        """WHERE body for ``spend_hourly``: range plus every dimension that is set."""
        return " AND ".join([self.hour_bounds(), *self._dimensions("model", use_team)])

    def events_where(self, *, use_team: bool = True) -> str:
        """WHERE body for ``events``: the same selection on the raw table's column names."""
        return " AND ".join([self.bounds("received_at"), *self._dimensions("served_model", use_team)])

    def _dimensions(self, model_column: str, use_team: bool) -> list[str]:
        pairs = [("team", "team", self.team if use_team else ""), ("repo", "repo", self.repo),
                 ("tool", "tool", self.tool), (model_column, "model", self.model)]
        return [f"{column} = {{{name}:String}}" for column, name, value in pairs if value]


def _parse_day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"'{name}' must be a date written YYYY-MM-DD, not {text!r}.") from None


def parse_filters(params: Mapping[str, str], timezone: str) -> Filters:
    """Filters from query parameters; the default range is this month up to today.

    Raises ``BadFilter`` for a malformed date, a range that ends before it
    starts, or one longer than ``MAX_RANGE_DAYS``.
    """
    today = datetime.now(ZoneInfo(timezone)).date()
    start_text, end_text = params.get("from", "").strip(), params.get("to", "").strip()
    start = _parse_day(start_text, "from") if start_text else today.replace(day=1)
    end = _parse_day(end_text, "to") if end_text else max(today, start)
    if end < start:
        raise BadFilter(f"The range ends ({end}) before it starts ({start}); swap the two dates.")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise BadFilter(f"The range {start} to {end} is longer than {MAX_RANGE_DAYS} days; "
                        "choose a shorter one.")
    fields = {name: params.get(name, "").strip() for name in ("team", "repo", "tool", "model")}
    for name, value in fields.items():
        if len(value) > 200:
            raise BadFilter(f"The '{name}' filter is longer than 200 characters.")
    return Filters(start=start, end=end, timezone=timezone, **fields)
