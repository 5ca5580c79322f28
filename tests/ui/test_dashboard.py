"""The dashboard in a real browser, against the real pipeline after a simulated month.

Figures are checked against independent ClickHouse queries on ``events FINAL``
(the raw ledger), while the dashboard reads the ``spend_hourly`` rollup: the
two agreeing to the last decimal place is the point.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.traffic import ROUTING_RULES
from tests.ui.conftest import VOLUME, Loaded, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.store]


def _login(browser: Any, loaded: Loaded, key: str) -> Any:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{loaded.pipeline.gateway_url}/ui/overview")
    assert page.url.endswith("/ui/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/ui/overview"), page.inner_text("body")
    return page


def _events_sum(loaded: Loaded, where: str) -> Decimal:
    return Decimal(loaded.pipeline.scalar(f"SELECT sum(cost_usd) FROM events FINAL WHERE {where}"))


def _range_sql(loaded: Loaded, start: str, end_exclusive: str) -> str:
    zone = loaded.org.timezone
    return (f"received_at >= toDateTime('{start} 00:00:00', '{zone}') "
            f"AND received_at < toDateTime('{end_exclusive} 00:00:00', '{zone}')")


def test_admin_sees_every_team_and_each_page_renders(browser: Any, loaded: Loaded) -> None:
    page = _login(browser, loaded, loaded.admin_key)
    base = loaded.pipeline.gateway_url
    start = loaded.last_month_start.date()
    end = (loaded.this_month_start - timedelta(days=1)).date()
    query = f"from={start}&to={end}"
    page.goto(f"{base}/ui/overview?{query}")
    team_cells = page.locator("#table-teams tbody tr td:first-child").all_inner_texts()
    expected = {team.name for team in loaded.org.teams} | {"contractors"}
    assert set(team_cells) == expected
    shown_total = Decimal(page.inner_text("#total").replace("$", "").replace(",", ""))
    ledger_total = _events_sum(loaded, _range_sql(loaded, str(start), str(end + timedelta(days=1))))
    assert ledger_total > 0
    assert shown_total == ledger_total.quantize(Decimal("0.01"))
    assert page.locator(".uplot").count() == 1  # the daily chart was drawn by the vendored uPlot
    # what the routing rules saved, and what the shadow rule would save, as the ledger has it
    in_range = _range_sql(loaded, str(start), str(end + timedelta(days=1)))
    saved = Decimal(loaded.pipeline.scalar("SELECT sum(counterfactual_cost_usd - cost_usd) "
                                           f"FROM events FINAL WHERE {in_range}"))
    would = Decimal(loaded.pipeline.scalar("SELECT sum(cost_usd - shadow_cost_usd) FROM events "
                                           f"FINAL WHERE shadow_rule != '' AND {in_range}"))
    assert saved > 0 and would > 0
    for shown, exact in (("#saved", saved), ("#would-save", would)):
        assert Decimal(page.inner_text(shown).replace("$", "").replace(",", "")) == \
            exact.quantize(Decimal("0.01"))
    rules = set(page.locator("#table-savings tbody tr td:nth-child(2)").all_inner_texts())
    assert rules == {"cursor-sonnet-to-haiku", "opus-to-sonnet"}
    screenshot(page, "overview")

    page.goto(f"{base}/ui/overview")  # this month to date: the forecast column is filled
    forecasts = page.locator("#table-teams tbody tr td:nth-child(6)").all_inner_texts()
    assert any(text.startswith("$") for text in forecasts)

    team = loaded.org.teams[0].name
    page.goto(f"{base}/ui/team/{team}?{query}")
    developers = {d.name for d in loaded.org.developers if d.team == team}
    assert set(page.locator("#table-developers tbody tr td:first-child").all_inner_texts()) == developers
    assert page.locator("#table-top_requests tbody tr").count() == 20
    screenshot(page, "team")

    page.goto(f"{base}/ui/keys?{query}")
    key_ids = set(page.locator("#table-keys tbody tr td:first-child").all_inner_texts())
    assert {d.key_id for d in loaded.org.developers} <= key_ids
    assert "never used" in page.inner_text("#table-keys")  # the freshly minted UI keys
    assert loaded.admin_key not in page.content()
    screenshot(page, "keys")

    page.goto(f"{base}/ui/buckets?{query}")
    assert "acme-coder-34b" in page.inner_text("#table-unpriced")  # self-hosted, no price configured
    assert "contractors" in page.inner_text("#table-unattributed")
    screenshot(page, "buckets")

    page.goto(f"{base}/ui/activity?{query}")
    assert page.locator("#table-anomalies").count() == 1
    screenshot(page, "activity")
    page.context.close()


def test_team_lead_sees_own_team_only(browser: Any, loaded: Loaded) -> None:
    page = _login(browser, loaded, loaded.lead_key)
    base = loaded.pipeline.gateway_url
    query = f"from={loaded.last_month_start.date()}"
    page.goto(f"{base}/ui/overview?{query}")
    assert page.locator("#table-teams tbody tr td:first-child").all_inner_texts() == [loaded.lead_team]

    other = loaded.org.teams[0].name
    outsiders = [d.name for d in loaded.org.developers if d.team != loaded.lead_team]
    for url in (f"{base}/ui/team/{other}?{query}", f"{base}/ui/overview?{query}&team={other}",
                f"{base}/ui/team/{other}?{query}&csv=developers"):
        response = page.goto(url)
        assert response.status == 403, url
        text = page.inner_text("body")
        assert "Not your team" in text
        assert not [name for name in outsiders if name in text], "another team's people leaked"
        assert "$" not in page.inner_text("main")
    screenshot(page, "forbidden")

    page.goto(f"{base}/ui/keys?{query}")
    teams = set(page.locator("#table-keys tbody tr td:nth-child(4)").all_inner_texts())
    assert teams == {loaded.lead_team}
    page.context.close()


def test_filtered_csv_download_matches_the_ledger(browser: Any, loaded: Loaded) -> None:
    page = _login(browser, loaded, loaded.admin_key)
    team = loaded.org.teams[0].name
    start = loaded.last_month_start.date() + timedelta(days=2)
    end = start + timedelta(days=6)
    tool = "claude-code"
    page.goto(f"{loaded.pipeline.gateway_url}/ui/team/{team}?from={start}&to={end}")
    page.fill("input[name=tool]", tool)
    page.click("#filters button[type=submit]")
    page.wait_for_url(f"**tool={tool}**")
    with page.expect_download() as download_info:
        page.click("#table-developers a.csv")
    path = download_info.value.path()
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    downloaded = sum((Decimal(row["total_usd"]) for row in rows), Decimal(0))
    ledger = _events_sum(loaded, f"team = '{team}' AND tool = '{tool}' AND "
                         + _range_sql(loaded, str(start), str(end + timedelta(days=1))))
    assert ledger > 0
    assert downloaded == ledger
    page.context.close()


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/ui/overview?from=2026-13-01", 400, "'from' must be a date written YYYY-MM-DD"),
    ("/ui/overview?from=2026-11-20&to=2026-11-02", 400, "ends (2026-11-02) before it starts"),
    ("/ui/team/no-such-team", 404, "There is no team called 'no-such-team'"),
    ("/ui/keys?csv=nope", 400, "no table called 'nope'"),
])
def test_bad_input_is_a_clear_message(browser: Any, loaded: Loaded, path: str, status: int,
                                      message: str) -> None:
    page = _login(browser, loaded, loaded.admin_key)
    response = page.goto(loaded.pipeline.gateway_url + path)
    assert response.status == status
    text = page.inner_text("main")
    assert message in text
    assert "Traceback" not in page.content()
    if status == 404:
        screenshot(page, "unknown-team")
    page.context.close()


def test_a_wrong_key_is_refused_at_login(browser: Any, loaded: Loaded) -> None:
    page = browser.new_page()
    page.goto(f"{loaded.pipeline.gateway_url}/ui/login")
    page.fill("input[name=key]", "ml-not-a-real-key")
    page.click("button[type=submit]")
    assert "not a Meterline virtual key" in page.inner_text("main")
    # only the CSRF nonce (docs/security.md): no session was issued
    assert [cookie["name"] for cookie in page.context.cookies()] == ["meterline_csrf"]
    screenshot(page, "login")
    response = page.goto(f"{loaded.pipeline.gateway_url}/ui/keys")
    assert response is not None and response.url.endswith("/ui/login")
    page.close()


def test_reconciliation_page_shows_each_model_day_and_the_gap(browser: Any,
                                                                loaded: Loaded) -> None:
    """The provider is told it served last month's calls, but one day's Sonnet calls
    twice over: that model-day is past tolerance, the rest match; a lead sees no rows."""
    from meterline.schemas import Settings
    from meterline.simulator.direct_keys import served_call
    from meterline.simulator.drive import tell_provider_served
    from meterline.simulator.routing import route_envelopes
    from meterline.sinks import remote_job
    from tests.harness import TEST_STORE_OPERATOR_TOKEN

    start, end = loaded.last_month_start, loaded.this_month_start
    # served as the routing rules sent them, as the month was loaded
    config = Settings(**{**loaded.org.settings_overrides(), **ROUTING_RULES})
    envelopes = list(route_envelopes(config, loaded.org.envelopes(start, end, volume=VOLUME)))
    doubled_day = (start + timedelta(days=10)).astimezone(UTC).date()
    served = [served_call(e, "") for e in envelopes]
    served += [served_call(e, "") for e in envelopes if e.served_model == "claude-sonnet-4-5"
               and e.received_at.astimezone(UTC).date() == doubled_day]
    tell_provider_served(loaded.pipeline.simulator_url, [c for c in served if c is not None])
    days = {"from": str(start.astimezone(UTC).date()), "to": str(end.astimezone(UTC).date()),
            "alert": False}
    summary = remote_job(loaded.pipeline.store_url, "reconcile_providers", days,
                         token=TEST_STORE_OPERATOR_TOKEN)
    assert len(summary["differences"]) == 1, summary["differences"]
    assert summary["differences"][0].startswith(f"{doubled_day} anthropic claude-sonnet-4-5")

    page = _login(browser, loaded, loaded.admin_key)
    page.goto(f"{loaded.pipeline.gateway_url}/ui/reconciliation?from={start.date()}"
              f"&to={(end - timedelta(days=1)).date()}")
    rows = page.locator("#table-compared tbody tr").all_inner_texts()
    assert len(rows) == summary["compared"] and len(rows) > 10
    (past,) = [row for row in rows if "PAST TOLERANCE" in row]
    assert str(doubled_day) in past and "claude-sonnet-4-5" in past
    assert sum("matches" in row for row in rows) == len(rows) - 1
    screenshot(page, "reconciliation")
    page.context.close()

    lead = _login(browser, loaded, loaded.lead_key)
    lead.goto(f"{loaded.pipeline.gateway_url}/ui/reconciliation?from={start.date()}")
    assert lead.locator("#table-compared").count() == 0
    assert "an admin sees the findings here" in lead.inner_text("main")
    lead.context.close()
