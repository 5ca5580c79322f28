"""The egress-policy report: what each rule broke, blocked or would have blocked.

Rules run in ``audit`` mode until they are tuned on real traffic; this report
is how they are tuned. ``build_policy_report`` reads one window of ``events``
and ``sensitive_findings`` and answers, per rule: calls that broke it and
passed (audit mode: enforcement would have blocked them), calls refused
(enforce mode), calls an allow-exception let through, who and what was
involved, and the spend of those calls; per sensitive-data kind: messages with
findings and the calls that carried them; per configured exception: how many
calls it let through, so stale ones can be removed. It never reads a message
text (``audit_bodies`` is not touched).

Reads, each aggregated inside ClickHouse (rows per rule x attribution, not
per call):

- ``events FINAL``: one row per request id at its latest version
  (docs/clickhouse.md), so a re-priced call is counted once at its current
  cost. ``policy_detail`` (a JSON array of ``PolicyBreach``) is expanded with
  ``ARRAY JOIN``; a call is counted once per rule, as ``refused`` if any of
  its non-excepted breaches of the rule was enforced, else ``audit`` if any
  was not excepted, else ``excepted``.
- ``sensitive_findings FINAL`` joined to the window's calls through an
  ``ARRAY JOIN`` of ``events.request_messages`` (a hash join on the message
  address, the findings being the small side): a message found once is
  counted in every call that resent it.

``query`` is any function running SQL and returning ``JSONEachRow`` bytes: the
store's read-only endpoint (``store_query``) or a direct client
(``client_query``). Both raise on failure (``sinks.QueryError``,
``sinks.StoreUnavailable``); nothing is retried, the report writes nothing.
Amounts are exact ``Decimal`` (``parse_float=Decimal``), never floats.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from meterline.schemas import SENSITIVE_RULE, UNKNOWN_REPO_RULE, EgressSettings, PolicyException
from meterline.sinks import remote_query
from meterline.sinks.errors import store_errors

from .chargeback_query import exact

#: Runs SQL whose values are ``{name:Type}`` parameters bound from the mapping.
RawQuery = Callable[[str, Mapping[str, str]], bytes]
Status = Literal["audit", "refused", "excepted"]
STATUSES: tuple[Status, ...] = ("audit", "refused", "excepted")
TOP = 5
_TIME = "%Y-%m-%d %H:%M:%S.%f"
_EXPAND_BREACHES = "ARRAY JOIN JSONExtractArrayRaw(policy_detail) AS breach"
_EXPAND_MESSAGES = "ARRAY JOIN request_messages AS message_hash"


def store_query(store_url: str, token: str | None, timeout_s: float = 120.0) -> RawQuery:
    """Queries through a store's read-only endpoint (``sinks.remote_query``) with ``token``."""
    return lambda sql, params: remote_query(store_url, sql, "JSONEachRow", timeout_s=timeout_s,
                                            token=token, parameters=params)


def client_query(client: Any) -> RawQuery:
    """Queries on a clickhouse-connect client; its errors become ``StoreUnavailable``."""
    def run(sql: str, params: Mapping[str, str]) -> bytes:
        with store_errors("reading the policy report"):
            data: bytes = client.raw_query(sql, parameters=dict(params), fmt="JSONEachRow")
        return data
    return run


def parse_moment(text: str, timezone: str) -> datetime:
    """``YYYY-MM-DD`` (local midnight) or an ISO date-time, local unless it carries an offset."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a date or date-time: {text!r} (expected YYYY-MM-DD or "
                         f"YYYY-MM-DDTHH:MM[:SS][+HH:MM])") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))


@dataclass(frozen=True, slots=True)
class ReportWindow:
    """[start, end) in UTC, the zone its local days are read in, and an optional team."""

    start: datetime
    end: datetime
    timezone: str
    team: str | None = None

    @classmethod
    def parse(cls, since: str, until: str | None, timezone: str, *, now: datetime,
              team: str | None = None) -> ReportWindow:
        """The window of ``--since``/``--until`` (default ``now``); ``ValueError`` if empty."""
        start = parse_moment(since, timezone).astimezone(UTC)
        end = parse_moment(until, timezone).astimezone(UTC) if until else now.astimezone(UTC)
        if start >= end:
            raise ValueError(f"the window is empty: --since {since} is not before "
                             f"{'--until ' + until if until else 'now'}")
        return cls(start, end, timezone, team or None)

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(ZoneInfo(self.timezone))

    def params(self) -> dict[str, str]:
        """The bound values the report's SQL names: the window's ends, team and zone."""
        return {"start": f"{self.start:{_TIME}}", "end": f"{self.end:{_TIME}}",
                "team": self.team or "", "tz": self.timezone, "sensitive_rule": SENSITIVE_RULE}


@dataclass(slots=True)
class RuleFigures:
    """One rule over the window. Distinct teams, users, repos and the top lists count
    the calls the rule would block (``audit`` and ``refused``), not the excepted ones."""

    rule: str
    mode: str
    kinds: set[str] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    cost_usd: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(STATUSES,
                                                                               Decimal(0)))
    teams: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    repos: Counter[str] = field(default_factory=Counter)
    models: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def blocked(self) -> int:
        """Calls enforcement blocks or would have blocked: refused plus audit-mode breaches."""
        return self.calls["audit"] + self.calls["refused"]


@dataclass(frozen=True, slots=True)
class SensitiveFigures:
    """One finding kind: distinct messages and the window's calls that carried them.
    ``*_excepted``: messages whose findings were excepted, calls carrying only those."""

    kind: str
    category: str
    messages: int
    messages_excepted: int
    calls: int
    calls_excepted: int
    teams: int
    repos: int
    users: int


@dataclass(frozen=True, slots=True)
class ExceptionUse:
    """A configured exception (``index`` in ``egress.exceptions``) and the calls it let
    through in the window; ``stale`` when none. A call covered by two exceptions
    counts for both."""

    index: int
    exception: PolicyException
    calls: int
    expired: bool

    @property
    def stale(self) -> bool:
        return self.calls == 0


@dataclass(frozen=True, slots=True)
class PolicyReport:
    window: ReportWindow
    calls: int
    cost_usd: Decimal
    breaching_calls: int
    rules: list[RuleFigures]
    sensitive: list[SensitiveFigures]
    exceptions: list[ExceptionUse]
    #: Excepted calls no configured exception covers (one was removed or narrowed since).
    uncovered_excepted_calls: int


def _rows(query: RawQuery, sql: str, window: ReportWindow) -> list[dict[str, Any]]:
    return [json.loads(line, parse_float=Decimal)
            for line in query(sql, window.params()).splitlines() if line]


def _calls_in(database: str, window: ReportWindow, array_join: str = "") -> str:
    """The ``FROM … WHERE`` of the window's calls, one row per request id (``FINAL``),
    with ``array_join`` (an ``ARRAY JOIN`` clause) expanding each."""
    team = " AND team = {team:String}" if window.team is not None else ""
    return (f"{database}.events FINAL {array_join} WHERE received_at >= "
            "{start:DateTime64(6, 'UTC')} AND received_at < {end:DateTime64(6, 'UTC')}"
            f"{team}")


def _per_call_rule(database: str, window: ReportWindow) -> str:
    """One row per (call, rule broken): its attribution, cost, status and breach kinds."""
    return f"""
        SELECT request_id, rule, any(team) AS team, any(user) AS user, any(repo) AS repo,
               any(provider) AS provider, any(model) AS model, any(cost) AS cost,
               any(day) AS day, arraySort(groupUniqArray(kind)) AS kinds,
               multiIf(countIf(enforced AND NOT excepted) > 0, 'refused',
                       countIf(NOT excepted) > 0, 'audit', 'excepted') AS status
        FROM (SELECT request_id, team, user, repo, provider, cost_usd AS cost,
                     if(served_model != '', served_model, requested_model) AS model,
                     toDate(received_at, {{tz:String}}) AS day,
                     JSONExtractString(breach, 'rule') AS rule,
                     JSONExtractString(breach, 'kind') AS kind,
                     JSONExtractBool(breach, 'enforced') AS enforced,
                     JSONExtractBool(breach, 'excepted') AS excepted
              FROM {_calls_in(database, window, _EXPAND_BREACHES)}
                   AND policy_detail NOT IN ('', '[]'))
        GROUP BY request_id, rule"""


def _rule_modes(egress: EgressSettings) -> dict[str, str]:
    """The mode each configured rule runs in; pseudo-rules only when they can break."""
    modes: dict[str, str] = {rule.name: rule.mode or egress.mode for rule in egress.rules}
    if egress.unknown_repos.providers or egress.unknown_repos.models:
        modes[UNKNOWN_REPO_RULE] = egress.mode
    if egress.sensitive.mode != "off":
        modes[SENSITIVE_RULE] = egress.sensitive.mode
    return modes


def fetch_rules(query: RawQuery, database: str, window: ReportWindow,
                egress: EgressSettings) -> list[RuleFigures]:
    """Every configured rule (in config order) and every rule broken in the window."""
    modes = _rule_modes(egress)
    figures = {name: RuleFigures(name, mode) for name, mode in modes.items()}
    sql = f"""
        SELECT rule, status, team, user, repo, provider, model,
               groupUniqArrayArray(kinds) AS kinds, count() AS calls, sum(cost) AS cost_usd
        FROM ({_per_call_rule(database, window)})
        GROUP BY rule, status, team, user, repo, provider, model"""
    for row in _rows(query, sql, window):
        rule = figures.setdefault(row["rule"], RuleFigures(row["rule"], "not configured"))
        calls, status = int(row["calls"]), row["status"]
        rule.kinds.update(row["kinds"])
        rule.calls[status] += calls
        rule.cost_usd[status] += exact(row["cost_usd"])
        if status != "excepted":
            rule.teams.add(row["team"])
            rule.users.add(row["user"])
            rule.repos[row["repo"]] += calls
            rule.models[(row["provider"], row["model"])] += calls
    return list(figures.values())


def fetch_sensitive(query: RawQuery, database: str, window: ReportWindow) -> list[SensitiveFigures]:
    """Per (kind, category): messages with findings and the window's calls carrying them."""
    sql = f"""
        SELECT kind, category, uniqExact(message_hash) AS messages,
               uniqExactIf(message_hash, excepted) AS messages_excepted,
               uniqExact(request_id) AS calls,
               uniqExact(request_id) - uniqExactIf(request_id, NOT excepted) AS calls_excepted,
               uniqExact(team) AS teams, uniqExact(repo) AS repos, uniqExact(user) AS users
        FROM (SELECT request_id, team, user, repo, message_hash
              FROM {_calls_in(database, window, _EXPAND_MESSAGES)}) AS calls
        INNER JOIN (SELECT message_hash, kind, category, min(excepted) AS excepted
                    FROM {database}.sensitive_findings FINAL
                    WHERE at < toDateTime64('{window.end:{_TIME}}', 6, 'UTC')
                    GROUP BY message_hash, kind, category) AS found USING message_hash
        GROUP BY kind, category
        ORDER BY calls DESC, kind"""
    return [SensitiveFigures(kind=r["kind"], category=r["category"], messages=int(r["messages"]),
                             messages_excepted=int(r["messages_excepted"]), calls=int(r["calls"]),
                             calls_excepted=int(r["calls_excepted"]), teams=int(r["teams"]),
                             repos=int(r["repos"]), users=int(r["users"]))
            for r in _rows(query, sql, window)]


def _excepted_calls(query: RawQuery, database: str, window: ReportWindow) -> list[dict[str, Any]]:
    """Excepted calls grouped by what an exception matches on: rule, kinds, repo, team,
    user, local day. Sensitive-data exceptions name finding kinds, so for that rule
    the kinds are those of the excepted findings the call carried."""
    rules = f"""
        SELECT rule, kinds, repo, team, user, day, count() AS calls
        FROM ({_per_call_rule(database, window)})
        WHERE status = 'excepted' AND rule != {{sensitive_rule:String}}
        GROUP BY rule, kinds, repo, team, user, day"""
    sensitive = f"""
        SELECT {{sensitive_rule:String}} AS rule, kinds, repo, team, user, day,
               count() AS calls
        FROM (SELECT request_id, any(repo) AS repo, any(team) AS team, any(user) AS user,
                     any(day) AS day, arraySort(groupUniqArray(kind)) AS kinds
              FROM (SELECT request_id, repo, team, user, message_hash,
                           toDate(received_at, {{tz:String}}) AS day
                    FROM {_calls_in(database, window, _EXPAND_MESSAGES)}) AS calls
              INNER JOIN (SELECT DISTINCT message_hash, kind
                          FROM {database}.sensitive_findings FINAL WHERE excepted) AS found
              USING message_hash
              GROUP BY request_id)
        GROUP BY kinds, repo, team, user, day"""
    return _rows(query, rules, window) + _rows(query, sensitive, window)


def match_exceptions(egress: EgressSettings, excepted: Iterable[dict[str, Any]],
                     today: date) -> tuple[list[ExceptionUse], int]:
    """Each configured exception with the excepted calls it covers, and the calls none covers."""
    used = Counter[int]()
    uncovered = 0
    for group in excepted:
        day = date.fromisoformat(group["day"])
        covering = [index for index, exception in enumerate(egress.exceptions)
                    if any(exception.covers(group["rule"], repo=group["repo"], team=group["team"],
                                            user=group["user"], today=day, kind=kind)
                           for kind in group["kinds"] or [""])]
        for index in covering:
            used[index] += int(group["calls"])
        if not covering:
            uncovered += int(group["calls"])
    return [ExceptionUse(index, exception, used[index],
                         expired=exception.until is not None and exception.until < today)
            for index, exception in enumerate(egress.exceptions)], uncovered


def build_policy_report(query: RawQuery, database: str, egress: EgressSettings,
                        window: ReportWindow) -> PolicyReport:
    """The report of ``window``: five read-only queries, nothing written."""
    totals = _rows(query, f"SELECT count() AS calls, sum(cost_usd) AS cost_usd, "
                          f"countIf(policy_breach) AS breaching FROM {_calls_in(database, window)}",
                   window)
    exceptions, uncovered = match_exceptions(egress, _excepted_calls(query, database, window),
                                             window.local(window.end).date())
    return PolicyReport(window=window, calls=int(totals[0]["calls"]),
                        cost_usd=exact(totals[0]["cost_usd"]),
                        breaching_calls=int(totals[0]["breaching"]),
                        rules=fetch_rules(query, database, window, egress),
                        sensitive=fetch_sensitive(query, database, window),
                        exceptions=exceptions, uncovered_excepted_calls=uncovered)
