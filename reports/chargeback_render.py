"""Rendering the chargeback: the HTML report and the team leads' summaries (Jinja2).

Templates live in ``reports/templates``. HTML is autoescaped (team and user
names come from configuration and keys, and may hold anything); text
summaries are not. Money is shown to the cent in tables, and exactly (12
places) in the reconciliation footer, which is the figure finance books.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .chargeback_chart import spend_by_day, spend_by_team, team_colours
from .chargeback_model import Chargeback, TeamChargeback

BREAKDOWNS = (("model", "Model"), ("provider", "Provider"), ("user", "User"), ("repo", "Repository"),
              ("tool", "Tool"))
_CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """``$1,234.57``: to the cent, banker's rounding."""
    cents = value.quantize(_CENT, rounding=ROUND_HALF_EVEN)
    return f"-${-cents:,.2f}" if cents < 0 else f"${cents:,.2f}"


def exact(value: Decimal) -> str:
    return f"{value:,.12f}"


def count(value: int) -> str:
    return f"{value:,}"


def change(team: TeamChargeback) -> str:
    """``+12.3%`` on last month, ``new`` without spend last month, ``n/a`` with neither."""
    ratio = team.change_ratio
    if ratio is None:
        return "new" if team.cost_usd else "n/a"
    return f"{ratio * 100:+.1f}%"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("meterline.reports", "templates"),
                      autoescape=select_autoescape(enabled_extensions=("html.j2",),
                                                   default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters.update(money=money, exact=exact, count=count, change=change)
    return env


_ENV = _environment()


def render_html(chargeback: Chargeback, *, generated_at: datetime, run_id: str) -> str:
    """The printable HTML report, charts inline, reconciliation footer at the end.

    Only a reconciled chargeback can be rendered: the footer is part of the report.
    """
    if chargeback.reconciliation is None:
        raise ValueError(f"chargeback {chargeback.month} has not been reconciled")
    return _ENV.get_template("chargeback.html.j2").render(
        cb=chargeback, generated_at=generated_at, run_id=run_id, breakdowns=BREAKDOWNS,
        team_chart=spend_by_team(chargeback), day_chart=spend_by_day(chargeback),
        colours=team_colours(chargeback))


def slug(text: str) -> str:
    """A file-name-safe, stable ASCII form: ``Zürich-Daten`` -> ``zurich-daten``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "unnamed"


def render_lead_summaries(chargeback: Chargeback) -> dict[str, tuple[str, str]]:
    """``{lead: (file name, text)}`` for every team lead, covering each of their teams.

    File names are the lead's slug; two leads whose slugs collide get a
    numbered suffix in lead order, so names stay stable for a fixed config.
    """
    teams_by_lead: dict[str, list[TeamChargeback]] = defaultdict(list)
    for team in chargeback.teams:
        if team.lead:
            teams_by_lead[team.lead].append(team)
    template = _ENV.get_template("lead_summary.txt.j2")
    summaries: dict[str, tuple[str, str]] = {}
    used: set[str] = set()
    for lead in sorted(teams_by_lead):
        name = base = slug(lead)
        suffix = 2
        while name in used:
            name, suffix = f"{base}-{suffix}", suffix + 1
        used.add(name)
        summaries[lead] = (f"{name}.txt", template.render(cb=chargeback, lead=lead,
                                                          teams=teams_by_lead[lead]))
    return summaries
