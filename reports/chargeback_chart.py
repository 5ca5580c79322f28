"""Geometry for the report's two inline SVG charts: spend by team, and by day.

Pure arithmetic, no drawing: the template turns these rectangles into SVG,
so the HTML needs no script, no CDN and no build step, and prints as drawn.
Positions are floats in SVG user units; money stays ``Decimal`` until the
single conversion to a pixel length here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from .chargeback_model import Chargeback

#: Colour-blind-safe palette (Okabe-Ito), cycled over teams; grey is the unattributed bucket.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
UNATTRIBUTED_COLOUR = "#9a9a9a"
_TICKS = tuple(Decimal(f) for f in ("0", "0.25", "0.5", "0.75", "1"))


@dataclass(frozen=True, slots=True)
class Bar:
    """One rectangle: a team's bar, or a team's slice of one day's stack."""

    label: str
    colour: str
    x: float
    y: float
    width: float
    height: float
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart's size, its rectangles, and its labels, ready for the template."""

    width: float
    height: float
    bars: list[Bar]
    max_usd: Decimal
    #: (y, text) ticks on the value axis.
    axis_labels: list[tuple[float, str]]
    legend: list[tuple[str, str]]
    #: (x, text) labels under the bars.
    x_labels: list[tuple[float, str]]


def team_colours(chargeback: Chargeback) -> dict[str, str]:
    colours = {team.name: PALETTE[i % len(PALETTE)] for i, team in enumerate(chargeback.teams)}
    colours[chargeback.unattributed.name] = UNATTRIBUTED_COLOUR
    return colours


def _scale(value: Decimal, maximum: Decimal, length: float) -> float:
    return float(value / maximum) * length if maximum > 0 else 0.0


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value``: round axis ticks."""
    if value <= 0:
        return Decimal(0)
    power = Decimal(10) ** (value.adjusted())
    for step in (1, 2, Decimal("2.5"), 5, 10):
        if value <= power * step:
            return power * step
    return power * 10


def _fit(label: str, max_chars: int = 26) -> str:
    """A label that fits the bar chart's label column (the full name is in the tables)."""
    return label if len(label) <= max_chars else label[: max_chars - 1] + "…"


def spend_by_team(chargeback: Chargeback, *, width: float = 930, row: float = 22,
                  label_width: float = 170, value_width: float = 110) -> Chart:
    """Horizontal bars, one per team and the unattributed bucket, largest first."""
    colours = team_colours(chargeback)
    teams = chargeback.all_teams
    maximum = max((team.cost_usd for team in teams), default=Decimal(0))
    length = width - label_width - value_width
    bars = [Bar(_fit(team.name), colours[team.name], label_width, i * row + 4,
                _scale(team.cost_usd, maximum, length), row - 8, team.cost_usd)
            for i, team in enumerate(teams)]
    return Chart(width, len(teams) * row + 4, bars, maximum, [], [], [])


def spend_by_day(chargeback: Chargeback, *, width: float = 930, height: float = 220,
                 left: float = 60, bottom: float = 24) -> Chart:
    """Vertical bars per local day, stacked by team; axis ticks in USD."""
    colours = team_colours(chargeback)
    days: list[date] = chargeback.window.days()
    totals = chargeback.daily_totals()
    maximum = nice_ceiling(max(totals.values(), default=Decimal(0)))
    plot_h = height - bottom - 8
    slot = (width - left) / max(len(days), 1)
    bars: list[Bar] = []
    for index, day in enumerate(days):
        y = 8 + plot_h
        for team in chargeback.all_teams:
            cost = team.daily.get(day, Decimal(0))
            if cost <= 0:
                continue
            h = _scale(cost, maximum, plot_h)
            y -= h
            bars.append(Bar(f"{day.isoformat()} {team.name}", colours[team.name],
                            left + index * slot + 1, y, max(slot - 2, 1), h, cost))
    places = 0 if maximum >= 100 else 2
    ticks = [(8 + plot_h - plot_h * float(fraction), f"${maximum * fraction:,.{places}f}")
             for fraction in _TICKS] if maximum > 0 else []
    legend = [(team.name, colours[team.name]) for team in chargeback.all_teams if team.daily]
    x_labels = [(left + i * slot + slot / 2, str(day.day)) for i, day in enumerate(days)]
    return Chart(width, height, bars, maximum, ticks, legend, x_labels)
