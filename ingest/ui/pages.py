"""What each page shows: its queries, and the tables and charts built from their rows.

Spend figures read the ``spend_hourly`` rollup, summed with ``sum()`` at
query time: the SummingMergeTree may hold unmerged parts, and summing is what
makes the figure exact and duplicate-safe (docs/clickhouse.md). Two reads
are raw: "top requests by cost", which needs request ids, and the overview's
routing savings, whose columns the rollup does not carry (only the rows a
rule matched). Both read ``events FINAL``, so a re-priced request is counted
at its latest price only.

Scoping to the viewer happens here, not in the templates: a team lead's
queries carry ``team = {team:String}`` bound to their own team, so another
team's rows are never fetched, let alone rendered. Every value is a bound
parameter (``Filters.params``); only column names are written into SQL.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from meterline.schemas import Settings
from meterline.schemas.governance import REFUSALS

from .access import KeyDirectory, Viewer
from .filters import Filters
from .store_reader import StoreReader
from .tables import Table, count, daily_series, money, pivot_by_day, table_from_rows

SPEND = "sum(cost_usd) AS spend_usd, sum(requests) AS calls"
ALL_INPUT = "sum(input_tokens + cache_read_tokens + cache_write_tokens) AS input_tokens"


@dataclass(slots=True)
class Page:
    """Tables (each downloadable) and charts (uPlot data) of one rendered page."""

    tables: list[Table]
    charts: dict[str, Any]
    summary: dict[str, Any]


def _team_scope(viewer: Viewer, filters: Filters) -> Filters:
    """A team lead's selection is always their own team, whatever the URL says."""
    return filters if viewer.admin else filters.with_team(viewer.team)


_DAY = "toDate(hour, {tz:String}) AS day"


async def overview(reader: StoreReader, settings: Settings, viewer: Viewer, filters: Filters) -> Page:
    scoped = _team_scope(viewer, filters)
    where, bound = scoped.rollup_where(), scoped.params()
    by_team, daily, savings = await reader.many([
        (f"SELECT team, any(cost_centre) AS cost_centre, {SPEND}, "
         f"sumIf(requests, unpriced) AS unpriced_calls FROM spend_hourly WHERE {where} "
         "GROUP BY team ORDER BY spend_usd DESC", bound),
        (f"SELECT {_DAY}, team, sum(cost_usd) AS spend_usd FROM spend_hourly WHERE {where} "
         "GROUP BY day, team ORDER BY day", bound),
        (_savings_sql(scoped.events_where()), bound),
    ])
    budgets = {team.name: team for team in settings.teams if viewer.may_see(team.name)}
    seen = {row["team"] for row in by_team}
    if not (scoped.repo or scoped.tool or scoped.model):  # a configured team with no spend yet
        by_team += [{"team": name, "cost_centre": team.cost_centre, "spend_usd": 0, "calls": 0,
                     "unpriced_calls": 0} for name, team in budgets.items()
                    if name not in seen and (not scoped.team or name == scoped.team)]
    fraction = _elapsed_fraction(filters) if filters.is_month_to_date else None
    rows: list[list[Any]] = []
    for row in by_team:
        spend = money(row["spend_usd"])
        team = budgets.get(row["team"])
        budget = team.budget_usd if team is not None else None
        forecast = (spend / Decimal(fraction)).quantize(Decimal("0.01")) if fraction else None
        share = f"{spend / budget:.0%}" if budget else ""
        rows.append([row["team"] or "(none)", row["cost_centre"], spend, budget, share, forecast,
                     count(row["calls"]), count(row["unpriced_calls"])])
    columns = ["team", "cost_centre", "spend_usd", "monthly_budget_usd", "budget_used",
               "forecast_month_end_usd", "calls", "unpriced_calls"]
    note = ("Forecast: month-to-date spend extrapolated linearly to the end of the month."
            if fraction else "Forecast is shown when the range is this month up to today.")
    teams = Table("teams", "Spend by team", columns, rows,
                  frozenset({"spend_usd", "monthly_budget_usd", "forecast_month_end_usd"}), note)
    daily_table = pivot_by_day("daily", "Spend per team and day", daily, label="team",
                               days=scoped.days)
    total = sum((money(row["spend_usd"]) for row in by_team), Decimal(0))
    savings_table = table_from_rows(
        "savings", "Routing savings", savings,
        ["team", "rule", "mode", "calls", "actual_usd", "counterfactual_usd", "saved_usd",
         "would_save_usd"],
        money_columns=["actual_usd", "counterfactual_usd", "saved_usd", "would_save_usd"],
        count_columns=["calls"],
        note="Calls routing rules matched (docs/routing.md). Enforce: the counterfactual is what "
             "the requested model would have cost for the same usage. Shadow: it is the cost "
             "on the rule's target, which the call was not sent to.")
    return Page([teams, daily_table, savings_table],
                {"daily": daily_series(daily, label="team", days=scoped.days)},
                {"total_usd": total, "teams": len(rows),
                 "saved_usd": sum((money(r["saved_usd"]) for r in savings), Decimal(0)),
                 "would_save_usd": sum((money(r["would_save_usd"]) for r in savings),
                                       Decimal(0))})


def _savings_sql(where: str) -> str:
    """Per team and rule: what enforce rules saved and shadow rules would save (``events``;
    the rollup does not carry the routing columns)."""
    def part(mode: str, rule: str, other: str, saved: str, would: str) -> str:
        return (f"SELECT team, {rule} AS rule, '{mode}' AS mode, count() AS calls, "
                f"sum(cost_usd) AS actual_usd, sum({other}) AS counterfactual_usd, "
                f"{saved} AS saved_usd, {would} AS would_save_usd FROM events FINAL "
                f"WHERE {where} AND {rule} != '' GROUP BY team, rule")
    nothing = "toDecimal128(0, 12)"
    return ("SELECT * FROM ("
            + part("enforce", "routing_rule", "counterfactual_cost_usd",
                   "sum(counterfactual_cost_usd - cost_usd)", nothing)
            + " UNION ALL "
            + part("shadow", "shadow_rule", "shadow_cost_usd", nothing,
                   "sum(cost_usd - shadow_cost_usd)")
            + ") ORDER BY team, mode, rule")


def _elapsed_fraction(filters: Filters) -> float:
    """Share of the current month (in the configured zone) that has passed."""
    zone = ZoneInfo(filters.timezone)
    now = datetime.now(zone)
    start = datetime(now.year, now.month, 1, tzinfo=zone)
    days = calendar.monthrange(now.year, now.month)[1]
    return max((now - start) / timedelta(days=days), 1 / (24 * days))


#: The refusal classes as an SQL tuple: constants of this code, never user input.
_REFUSAL_CLASSES = "(" + ", ".join(f"'{name}'" for name in REFUSALS) + ")"


async def team(reader: StoreReader, viewer: Viewer, filters: Filters) -> Page:
    viewer.require(filters.team)
    where, day, bound = filters.rollup_where(), _DAY, filters.params()
    users, repos, mix, top, refused = await reader.many([
        (f"SELECT user, {day}, sum(cost_usd) AS spend_usd FROM spend_hourly WHERE {where} "
         "GROUP BY user, day", bound),
        (f"SELECT if(repo = '', '(unknown)', repo) AS repository, {day}, "
         f"sum(cost_usd) AS spend_usd FROM spend_hourly WHERE {where} GROUP BY repository, day",
         bound),
        (f"SELECT tool, model, {SPEND}, {ALL_INPUT}, sum(output_tokens) AS output_tokens, "
         f"sum(errors) AS errors FROM spend_hourly WHERE {where} GROUP BY tool, model "
         "ORDER BY spend_usd DESC", bound),
        ("SELECT request_id, toString(received_at) AS received_at_utc, user, repo, tool, "
         "served_model AS model, input_tokens + cache_read_tokens + cache_write_5m_tokens "
         "+ cache_write_1h_tokens AS input_tokens, output_tokens, cost_usd "
         f"FROM events FINAL WHERE {filters.events_where()} ORDER BY cost_usd DESC LIMIT 20",
         bound),
        (f"SELECT user, error_class, uniqExact(request_id) AS calls FROM events "
         f"WHERE {filters.events_where()} AND error_class IN {_REFUSAL_CLASSES} "
         "GROUP BY user, error_class ORDER BY calls DESC", bound),
    ])
    for row in refused:
        row["reason"] = REFUSALS.get(row.pop("error_class"), "")
    tables = [
        pivot_by_day("developers", "Spend per developer and day", users, label="user",
                     days=filters.days),
        pivot_by_day("repositories", "Spend per repository and day", repos, label="repository",
                     days=filters.days),
        table_from_rows("mix", "Tool and model mix", mix,
                        ["tool", "model", "spend_usd", "calls", "input_tokens", "output_tokens",
                         "errors"], money_columns=["spend_usd"],
                        count_columns=["calls", "input_tokens", "output_tokens", "errors"]),
        table_from_rows("top_requests", "Top requests by cost", top,
                        ["request_id", "received_at_utc", "user", "repo", "tool", "model",
                         "input_tokens", "output_tokens", "cost_usd"], money_columns=["cost_usd"],
                        count_columns=["input_tokens", "output_tokens"],
                        note="Ids and token counts only: prompt and response bodies are not stored."),
        table_from_rows("refused", "Calls refused at the gateway", refused,
                        ["user", "reason", "calls"], count_columns=["calls"],
                        note="Revoked or expired keys, models not allowed, rate limits and "
                             "blocking budgets (docs/governance.md). Refused calls cost nothing."),
    ]
    total = sum((money(row["spend_usd"]) for row in users), Decimal(0))
    return Page(tables, {"daily": daily_series(users, label="user", days=filters.days)},
                {"total_usd": total})


async def keys(reader: StoreReader, settings: Settings, directory: KeyDirectory, viewer: Viewer,
               filters: Filters) -> Page:
    scoped = _team_scope(viewer, filters)
    team_only = "team = {team:String}" if scoped.team else "1"
    in_range = scoped.hour_bounds()
    rows = await reader.rows(
        # aliases differ from the columns: ``any(team) AS team`` would capture the WHERE's team
        f"SELECT key_id, any(user) AS key_user, any(team) AS key_team, "
        f"toString(max(hour)) AS last_used_hour, "
        f"sumIf(cost_usd, {in_range}) AS spend_usd, sumIf(requests, {in_range}) AS calls "
        f"FROM spend_hourly WHERE {team_only} GROUP BY key_id", scoped.params())
    dormant = timedelta(days=settings.anomalies.defaults.dormant_after_days)
    idle_before = (datetime.now(UTC) - dormant).strftime("%Y-%m-%d %H:%M:%S")
    records = {key_id: record for key_id, record in directory.records().items()
               if not scoped.team or record.team == scoped.team}
    body: list[list[Any]] = []
    for row in rows:
        record = records.pop(row["key_id"], None)
        last = str(row["last_used_hour"])
        status = "idle" if last < idle_before else "active"
        body.append([row["key_id"], record.name if record else "", row["key_user"], row["key_team"],
                     record.created_at if record else "", last, money(row["spend_usd"]),
                     count(row["calls"]), status])
    for record in records.values():  # minted but never used
        body.append([record.id, record.name, record.user, record.team, record.created_at, "", Decimal(0),
                     0, "never used"])
    body.sort(key=lambda row: (row[8] == "active", -row[6]))
    columns = ["key_id", "name", "user", "team", "created_at", "last_used_hour_utc", "spend_usd",
               "calls", "status"]
    table = Table("keys", "Key inventory", columns, body, frozenset({"spend_usd"}),
                  f"Idle: no call for {dormant.days} days (anomalies.defaults.dormant_after_days). "
                  "Spend and calls are for the selected range; last use is over all time.")
    idle = sum(1 for row in body if row[8] != "active")
    return Page([table], {}, {"keys": len(body), "idle": idle})


async def buckets(reader: StoreReader, viewer: Viewer, filters: Filters) -> Page:
    scoped = _team_scope(viewer, filters)
    where, bound = scoped.rollup_where(), scoped.params()
    unpriced, unattributed = await reader.many([
        (f"SELECT provider, model, team, sum(requests) AS calls, {ALL_INPUT}, "
         f"sum(output_tokens) AS output_tokens FROM spend_hourly WHERE unpriced AND {where} "
         "GROUP BY provider, model, team ORDER BY calls DESC", bound),
        (f"SELECT team AS team_label, user, key_id, {SPEND} FROM spend_hourly "
         f"WHERE NOT attributed AND {where} GROUP BY team_label, user, key_id "
         "ORDER BY spend_usd DESC", bound),
    ])
    return Page([
        table_from_rows("unpriced", "Unpriced usage (no price known: not counted as $0 spend)",
                        unpriced, ["provider", "model", "team", "calls", "input_tokens",
                                   "output_tokens"],
                        count_columns=["calls", "input_tokens", "output_tokens"],
                        note="Add a price override in meterline.yaml, then re-price the range."),
        table_from_rows("unattributed", "Unattributed spend (team not in the configuration)",
                        unattributed, ["team_label", "user", "key_id", "spend_usd", "calls"],
                        money_columns=["spend_usd"], count_columns=["calls"]),
    ], {}, {})


async def reconciliation(reader: StoreReader, viewer: Viewer, filters: Filters) -> Page:
    """The ledger against the providers' own reports, and spend that bypassed the gateway.

    Organisation-wide (provider keys are not a team's), so admins only: a team
    lead sees the page's explanation and no rows.
    """
    if not viewer.admin:
        return Page([], {}, {"admin_only": True})
    bound = {"rec_from": filters.start.isoformat(), "rec_to": filters.end.isoformat()}
    span = "day >= {rec_from:Date} AND day <= {rec_to:Date}"
    compared, unmetered = await reader.many([
        ("SELECT toString(day) AS day_utc, provider, model, ledger_cost_usd, provider_cost_usd, "
         "difference_usd, toInt64(provider_input_tokens) - toInt64(ledger_input_tokens) AS "
         "input_gap, toInt64(provider_cache_read_tokens) - toInt64(ledger_cache_read_tokens) "
         "AS cache_read_gap, toInt64(provider_cache_write_tokens) - "
         "toInt64(ledger_cache_write_tokens) AS cache_write_gap, toInt64(provider_output_tokens)"
         " - toInt64(ledger_output_tokens) AS output_gap, multiIf(over_tolerance, "
         "'PAST TOLERANCE', difference_usd = 0 AND input_gap = 0 AND output_gap = 0, 'matches', "
         "'within tolerance') AS status FROM provider_reconciliation FINAL "
         f"WHERE finding = 'ledger' AND {span} ORDER BY over_tolerance DESC, abs(difference_usd) "
         "DESC, day, provider, model LIMIT 1000", bound),
        ("SELECT provider, api_key_id, scope, toString(min(day)) AS first_day, "
         "toString(max(day)) AS last_day, sum(provider_cost_usd) AS spend_usd, "
         "sum(provider_input_tokens + provider_cache_read_tokens + provider_cache_write_tokens) "
         "AS input_tokens, sum(provider_output_tokens) AS output_tokens "
         f"FROM provider_reconciliation FINAL WHERE finding = 'unmetered' AND {span} "
         "GROUP BY provider, api_key_id, scope ORDER BY spend_usd DESC", bound),
    ])
    past = sum(row["status"] == "PAST TOLERANCE" for row in compared)
    return Page([
        table_from_rows("compared", "Ledger against the providers' reports (per UTC day and model)",
                        compared, ["day_utc", "provider", "model", "ledger_cost_usd",
                                   "provider_cost_usd", "difference_usd", "input_gap",
                                   "cache_read_gap", "cache_write_gap", "output_gap", "status"],
                        money_columns=["ledger_cost_usd", "provider_cost_usd", "difference_usd"],
                        note="Gaps are the provider's count minus the ledger's, for the "
                             "gateway's own provider keys."),
        table_from_rows("unmetered", "Unmetered spend: provider keys the gateway does not hold",
                        unmetered, ["provider", "api_key_id", "scope", "first_day", "last_day",
                                    "spend_usd", "input_tokens", "output_tokens"],
                        money_columns=["spend_usd"],
                        count_columns=["input_tokens", "output_tokens"],
                        note="Usage the provider reports with no gateway events: calls made "
                             "around the gateway, priced at list price."),
    ], {}, {"compared": len(compared), "past_tolerance": past, "unmetered_keys": len(unmetered)})


async def activity(reader: StoreReader, viewer: Viewer, filters: Filters) -> Page:
    scoped = _team_scope(viewer, filters)
    team_only = " AND team = {team:String}" if scoped.team else ""
    bound = scoped.params()
    anomalies, alerts = await reader.many([
        ("SELECT toString(window_start) AS window_start_utc, kind, severity, team, user, key_id, "
         "repo, model, cost_usd, summary FROM anomalies FINAL "
         f"WHERE {scoped.bounds('window_start')}{team_only} ORDER BY window_start DESC LIMIT 200",
         bound),
        ("SELECT toString(recorded_at) AS recorded_at_utc, team, scope, subject, period, alert, "
         "if(state = 'sent', 'sent', concat('not delivered: ', detail)) AS delivery, "
         "spend_usd, budget_usd FROM budget_alerts WHERE state IN ('sent', 'undelivered') "
         f"AND {scoped.bounds('recorded_at')}{team_only} ORDER BY recorded_at DESC LIMIT 200",
         bound),
    ])
    return Page([
        table_from_rows("anomalies", "Anomalies", anomalies,
                        ["window_start_utc", "kind", "severity", "team", "user", "key_id", "repo",
                         "model", "cost_usd", "summary"], money_columns=["cost_usd"]),
        table_from_rows("alerts", "Budget alerts", alerts,
                        ["recorded_at_utc", "team", "scope", "subject", "period", "alert",
                         "delivery", "spend_usd", "budget_usd"],
                        money_columns=["spend_usd", "budget_usd"]),
    ], {}, {})


async def choices(reader: StoreReader, viewer: Viewer, filters: Filters) -> dict[str, list[str]]:
    """Values for the filter inputs' suggestions, and the teams this viewer may pick."""
    scoped = _team_scope(viewer, filters)
    team_only = "team = {team:String}" if not viewer.admin else "1"
    rows = await reader.rows(
        "SELECT groupUniqArray(team) AS teams, groupUniqArray(repo) AS repos, "
        "groupUniqArray(tool) AS tools, groupUniqArray(model) AS models "
        f"FROM spend_hourly WHERE {scoped.hour_bounds()} AND {team_only}", scoped.params())
    row = rows[0] if rows else {}
    return {name: sorted(v for v in row.get(name, []) if v) for name in ("teams", "repos", "tools", "models")}


async def known_teams(reader: StoreReader, settings: Settings) -> set[str]:
    """Configured teams plus every team label the ledger has seen (unattributed ones too)."""
    rows = await reader.rows("SELECT DISTINCT team FROM spend_hourly")
    return {team.name for team in settings.teams} | {str(row["team"]) for row in rows}
