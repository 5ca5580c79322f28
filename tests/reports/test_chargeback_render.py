"""Rendering from figures alone: escaping, unpriced marking, change on last month."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterline.reports.chargeback_csv import render_csv
from meterline.reports.chargeback_model import Reconciliation, build_chargeback
from meterline.reports.chargeback_period import Month
from meterline.reports.chargeback_query import DailySpend, Line
from meterline.reports.chargeback_render import money, render_html, slug
from meterline.schemas import Settings

ODD = "R&D <ops>"


def line(team: str, cost: str, *, unpriced: bool = False, attributed: bool = True) -> Line:
    return Line(team=team, cost_centre="CC-1", attributed=attributed, provider="openai",
                model="gpt-5", user='O"Brien', repo="acme/x", tool="codex", unpriced=unpriced,
                requests=3, errors=0, input_tokens=10, output_tokens=5, cache_read_tokens=0,
                cache_write_tokens=0, reasoning_tokens=0, cost_usd=Decimal(cost))


def test_names_are_escaped_in_html_and_quoted_in_csv() -> None:
    settings = Settings(teams=[{"name": ODD, "cost_centre": "CC-1", "lead": "a@example.com"}])
    month = Month(2026, 10)
    window = month.window("UTC")
    chargeback = build_chargeback(
        settings, month, window, [line(ODD, "1.000000000001"), line(ODD, "0", unpriced=True)],
        [DailySpend(True, ODD, window.first_day, 6, Decimal("1.000000000001"))],
        {(True, ODD): Decimal("0.5")})
    (team,) = chargeback.teams
    assert team.change_ratio == Decimal("1.000000000002")
    with pytest.raises(ValueError, match="not been reconciled"):
        render_html(chargeback, generated_at=datetime(2026, 11, 1, tzinfo=UTC), run_id="r0")
    chargeback.reconciliation = Reconciliation(chargeback.cost_usd, 6, chargeback.cost_usd, 6)
    html = render_html(chargeback, generated_at=datetime(2026, 11, 1, tzinfo=UTC), run_id="r1")
    assert "R&amp;D &lt;ops&gt;" in html and "<ops>" not in html
    assert "O&#34;Brien" in html
    csv_text = render_csv(chargeback).decode("utf-8-sig")
    assert ",CC-1,R&D <ops>,R&D <ops>,openai," in csv_text
    assert '"O""Brien"' in csv_text
    assert ",1.000000000001\r\n" in csv_text and ",unpriced,3,0,10,5,0,0,0,\r\n" in csv_text


def test_money_and_slugs() -> None:
    assert money(Decimal("1234.565")) == "$1,234.56"  # banker's rounding
    assert money(Decimal("-0.015")) == "-$0.02"
    assert slug("José Ñúñez") == "jose-nunez" and slug("Zürich-Daten") == "zurich-daten"
    assert slug("日本") == "unnamed"
