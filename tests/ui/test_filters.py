"""Filters and sessions on their own: the validation that keeps bad input off ClickHouse."""

from __future__ import annotations

from datetime import date

import pytest

from meterline.ingest.ui.access import SESSION_TTL_S, SessionSigner, Viewer
from meterline.ingest.ui.filters import BadFilter, Filters, parse_filters


def test_a_day_range_becomes_local_midnights_and_bound_dimensions() -> None:
    filters = parse_filters({"from": "2026-10-03", "to": "2026-10-09", "team": "o'neil\\x",
                             "tool": "cursor"}, "Europe/Berlin")
    assert filters.days[0] == date(2026, 10, 3) and len(filters.days) == 7
    where = filters.rollup_where()
    assert "hour >= toDateTime({day_from:String}, {tz:String})" in where
    assert "hour < toDateTime({day_after:String}, {tz:String})" in where
    assert "team = {team:String}" in where and "tool = {tool:String}" in where
    assert filters.params() | {"repo": "", "model": ""} == {
        "tz": "Europe/Berlin", "day_from": "2026-10-03 00:00:00",
        "day_after": "2026-10-10 00:00:00", "team": "o'neil\\x", "tool": "cursor", "repo": "",
        "model": ""}
    assert "served_model" not in where and "received_at >= " in filters.events_where()
    assert "team" not in filters.rollup_where(use_team=False)


@pytest.mark.parametrize(("params", "message"), [
    ({"from": "2026-02-30"}, "'from' must be a date"),
    ({"from": "yesterday"}, "'from' must be a date"),
    ({"from": "2026-10-09", "to": "2026-10-01"}, "before it starts"),
    ({"from": "2024-01-01", "to": "2026-01-01"}, "longer than 366 days"),
    ({"repo": "x" * 201}, "longer than 200 characters"),
])
def test_bad_filters_are_refused_with_a_sentence(params: dict[str, str], message: str) -> None:
    with pytest.raises(BadFilter, match=message):
        parse_filters(params, "UTC")


def test_the_default_range_is_this_month_to_date() -> None:
    filters = parse_filters({}, "UTC")
    assert filters.start.day == 1 and filters.is_month_to_date
    assert isinstance(filters, Filters)


def test_values_are_bound_parameters_never_sql_text() -> None:
    quote = "x' OR 1=1 --"
    filters = parse_filters({"team": quote, "repo": quote, "tool": quote, "model": quote}, "UTC")
    sql = " ".join([filters.rollup_where(), filters.events_where()])
    assert quote not in sql and "'" not in sql
    assert "team = {team:String}" in sql and "served_model = {model:String}" in sql
    assert filters.params()["team"] == quote


def test_session_cookie_carries_the_key_id_only_and_cannot_be_forged() -> None:
    signer = SessionSigner(b"s" * 32)
    cookie = signer.issue("key_0123456789ab", now_s=1000)
    assert signer.key_id(cookie, now_s=1001) == "key_0123456789ab"
    assert signer.key_id(cookie, now_s=1000 + SESSION_TTL_S + 1) is None  # expired
    forged = cookie.replace("key_0123456789ab", "key_ffffffffffff")
    assert signer.key_id(forged, now_s=1001) is None
    assert SessionSigner(b"t" * 32).key_id(cookie, now_s=1001) is None  # another process's secret
    assert signer.key_id("garbage", now_s=1001) is None


def test_a_team_lead_may_see_only_their_team() -> None:
    lead = Viewer("key_0123456789ab", "omar", "payments", admin=False)
    admin = Viewer("key_ba9876543210", "root", "platform", admin=True)
    assert lead.may_see("payments") and not lead.may_see("platform")
    assert admin.may_see("payments") and admin.may_see("anything")
