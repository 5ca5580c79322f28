"""A page's tables: one object rendered both as HTML and as the CSV download.

The HTML and the CSV of a table come from the same ``Table``, so "download as
CSV" can never disagree with what the page shows. Money cells are kept as
``Decimal`` and written to CSV unrounded (the ledger's twelve places); only the
HTML rounds them to cents for reading.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from .store_reader import Row


def money(value: Any) -> Decimal:
    """A cost from a JSON row (number, integer or string) as an exact Decimal."""
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def count(value: Any) -> int:
    """A count from a JSON row: ClickHouse quotes 64-bit integers in JSON output."""
    return int(value) if value not in (None, "") else 0


@dataclass(slots=True)
class Table:
    """Named rows with a header; ``money`` lists the columns holding USD amounts."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    money: frozenset[str] = field(default_factory=frozenset)
    note: str = ""

    def is_money(self, index: int) -> bool:
        return self.columns[index] in self.money

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([_csv_cell(value) for value in row])
        return out.getvalue()


def _csv_cell(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def table_from_rows(name: str, title: str, rows: Iterable[Row], columns: Sequence[str], *,
                    money_columns: Sequence[str] = (), count_columns: Sequence[str] = (),
                    note: str = "") -> Table:
    """A table of ``columns`` picked from query rows, converting money and count cells."""
    money_set, count_set = frozenset(money_columns), frozenset(count_columns)

    def cell(row: Row, column: str) -> Any:
        value = row.get(column)
        if column in money_set:
            return money(value)
        if column in count_set:
            return count(value)
        return value

    return Table(name, title, list(columns), [[cell(row, c) for c in columns] for row in rows],
                 money_set, note)


def pivot_by_day(name: str, title: str, rows: Iterable[Row], *, label: str, days: Sequence[date],
                 note: str = "") -> Table:
    """``label`` x day spend (rows carry ``label``, ``day`` and ``spend_usd``), with a total column."""
    by_label: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        cells = by_label.setdefault(str(row[label]), {})
        cells[str(row["day"])] = cells.get(str(row["day"]), Decimal(0)) + money(row["spend_usd"])
    day_names = [day.isoformat() for day in days]
    body: list[list[Any]] = [
        [name_, *[cells.get(day, Decimal(0)) for day in day_names], sum(cells.values(), Decimal(0))]
        for name_, cells in by_label.items()]
    body.sort(key=lambda row: row[-1], reverse=True)
    columns = [label, *day_names, "total_usd"]
    return Table(name, title, columns, body, frozenset(columns[1:]), note)


def daily_series(rows: Iterable[Row], *, label: str, days: Sequence[date],
                 top: int = 8) -> Mapping[str, Any]:
    """Chart data for uPlot: x = day starts (unix s), one spend series per ``label`` value.

    Only the ``top`` largest series are drawn, the rest summed as "other", so a
    team of forty stays readable.
    """
    table = pivot_by_day("chart", "", rows, label=label, days=days)
    series = [(str(row[0]), [float(v) for v in row[1:-1]]) for row in table.rows]
    if len(series) > top:
        rest = series[top:]
        other = [sum(values) for values in zip(*(values for _, values in rest), strict=True)]
        series = [*series[:top], ("other", other)]
    x = [int((day - date(1970, 1, 1)).total_seconds()) for day in days]
    return {"x": x, "series": [{"label": name, "values": values} for name, values in series]}
