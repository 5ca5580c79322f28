"""``meterline policy report`` on the real embedded ClickHouse, migrated by the real migrations.

Events are made by the processors' own enrichment (real price book) from
envelopes carrying breaches and message addresses as the gateway records
them, and stored by the sink's own writer; findings and a kept body go
straight into their tables. Expected figures are summed here from the events, not by the report.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import yaml

from meterline.cli.main import main
from meterline.embedded import free_port
from meterline.processors import Directory, PriceBook
from meterline.processors.enrich import encode_event_row, event_row
from meterline.reports.policy_report import (
    PolicyReport,
    ReportWindow,
    build_policy_report,
    client_query,
)
from meterline.reports.policy_report_render import render, report_json
from meterline.schemas import (
    BodyAudit,
    BreachKind,
    ClickHouseSettings,
    Envelope,
    PolicyBreach,
    Settings,
    Usage,
)
from meterline.sinks import EventWriter, QueryServer
from tests.harness import STORE_TOKEN_ENV, store_access

pytestmark = pytest.mark.store

ZONE = "Europe/Berlin"
TZ = ZoneInfo(ZONE)
SINCE, UNTIL = "2026-11-02", "2026-11-09"
AT = datetime(2026, 11, 3, 10, tzinfo=TZ)
SECRET_TEXT = "ghp_NEVER-PRINT-THIS-kept-body-text"
EGRESS: dict[str, Any] = {
    "mode": "audit",
    "rules": [{"name": "payments-restricted", "repos": ["acme/payments*"],
               "providers": ["anthropic"]},
              {"name": "secret-models", "repos": ["acme/secret*"], "models": ["acme-*"],
               "mode": "enforce"}],
    "exceptions": [
        {"rule": "payments-restricted", "users": ["alice"], "reason": "SEC-42 pilot"},
        {"rule": "payments-restricted", "repos": ["acme/payments-legacy"], "reason": "migrating"},
        {"rule": "sensitive-data", "kinds": ["email"], "teams": ["payments"], "reason": "support"},
        {"rule": "secret-models", "users": ["bob"], "until": "2026-10-01", "reason": "old"}],
}
SETTINGS = Settings(timezone=ZONE, teams=[{"name": "payments", "cost_centre": "CC-5200"},
                                          {"name": "data", "cost_centre": "CC-6100"}],
                    egress=EGRESS)


def call(at: datetime, *, user: str, team: str, repo: str, provider: str, model: str,
         refused: bool = False, breaches: Sequence[PolicyBreach] = (),
         messages: Sequence[str] = ()) -> Envelope:
    request_id = str(uuid.UUID(int=(int(at.timestamp() * 1000) << 80) | (0x7 << 76) | (0b10 << 62)
                                | uuid.uuid4().int & ((1 << 62) - 1)))
    return Envelope(request_id=request_id, received_at=at, done_at=at + timedelta(seconds=2),
                    surface="anthropic.messages" if provider == "anthropic" else "openai.chat",
                    provider=provider, requested_model=model, served_model="" if refused else model,
                    key_id="key_00000000beef", user=user, team=team, repo=repo,
                    repo_source="header", tool="claude-code",
                    status=403 if refused else 200,
                    outcome="gateway_error" if refused else "ok",
                    error_class="PolicyRefused" if refused else "",
                    usage=Usage(source="missing") if refused else Usage(
                        input_tokens=12_000, output_tokens=800, source="provider"),
                    body=BodyAudit(request_messages=list(messages)), breaches=list(breaches))


def breach(rule: str, kind: BreachKind = "provider_not_allowed", *, enforced: bool = False,
           excepted: bool = False) -> PolicyBreach:
    return PolicyBreach(rule=rule, kind=kind, detail=f"{rule}: {kind}", enforced=enforced,
                        excepted=excepted)


class Store:
    """Enriches and stores calls as the processors and the sink do; keeps the rows."""

    def __init__(self, client: Any, database: str) -> None:
        self.client, self.database = client, database
        self.directory = Directory(SETTINGS)
        self.book = PriceBook(SETTINGS.prices, {n: p.kind for n, p in SETTINGS.providers.items()})
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, envelope: Envelope) -> dict[str, Any]:
        row = event_row(envelope, self.directory, self.book)
        EventWriter(self.client, self.database).write(
            [(envelope.request_id, encode_event_row(row))])
        self.rows[envelope.request_id] = row
        return row

    def reprice(self, row: dict[str, Any], cost_usd: Decimal) -> None:
        """A version-2 row, as re-pricing writes it: FINAL must count the call once, at this cost."""
        self.client.raw_insert(f"{self.database}.events", fmt="JSONEachRow",
                               insert_block=encode_event_row({**row, "version": 2,
                                                              "cost_usd": cost_usd}),
                               settings={"date_time_input_format": "best_effort"})
        row["cost_usd"] = cost_usd

    def finding(self, message_hash: str, request_id: str, kind: str, category: str, start: int,
                *, excepted: bool = False, at: datetime = AT) -> None:
        self.client.insert(f"{self.database}.sensitive_findings", [[
            message_hash, request_id, at.astimezone(UTC), "payments", "erin", "acme/payments-api",
            "anthropic", "claude-sonnet-4-5", "user", 1, kind, category, "test", start,
            start + 20, excepted]], column_names=[
            "message_hash", "request_id", "at", "team", "user", "repo", "provider", "model", "role",
            "message_index", "kind", "category", "detector", "start", "end", "excepted"])


@pytest.fixture
def store(clickhouse: tuple[Any, str]) -> Store:
    """A week of calls breaking, refused by and excepted from the rules, with findings."""
    s = Store(*clickhouse)
    pay: dict[str, Any] = {"team": "payments", "repo": "acme/payments-api", "provider": "openai"}
    for hour in range(3):
        s.add(call(AT + timedelta(hours=hour), user="bob", model="gpt-5", **pay,
                   breaches=[breach("payments-restricted")]))
    s.add(call(AT, user="carol", team="payments", repo="acme/payments-web", provider="openai",
               model="gpt-4o-mini", breaches=[breach("payments-restricted")]))
    for day in range(2):
        s.add(call(AT + timedelta(days=day), user="alice", model="gpt-5", **pay,
                   breaches=[breach("payments-restricted", excepted=True)]))
    for _ in range(2):
        s.add(call(AT, user="dave", team="data", repo="acme/secret-ml", provider="anthropic",
                   model="claude-sonnet-4-5", refused=True,
                   breaches=[breach("secret-models", "model_not_allowed", enforced=True)]))
    s.add(call(AT, user="dave", team="data", repo="acme/data-api", provider="anthropic",
               model="claude-sonnet-4-5"))
    # Outside the window: a breach the day before, a finding-carrying call after.
    s.add(call(datetime(2026, 11, 1, 23, 59, tzinfo=TZ), user="bob", model="gpt-5", **pay,
               breaches=[breach("payments-restricted")]))
    s.add(call(datetime(2026, 11, 9, 0, 0, tzinfo=TZ), user="erin", team="payments",
               repo="acme/payments-api", provider="anthropic", model="claude-haiku-4-5",
               breaches=[breach("sensitive-data", "sensitive_data")],
               messages=["m-sys", "m-token", "m-late"]))
    # One conversation resent three times: the token (m-token) in every call, the
    # e-mail (m-mail, excepted for payments) from the second call on.
    conversation = [["m-sys", "m-token"], ["m-sys", "m-token", "m-reply", "m-mail"],
                    ["m-sys", "m-token", "m-reply", "m-mail", "m-reply2"]]
    for turn, messages in enumerate(conversation):
        s.add(call(AT + timedelta(minutes=turn), user="erin", team="payments",
                   repo="acme/payments-api", provider="anthropic", model="claude-sonnet-4-5",
                   breaches=[breach("sensitive-data", "sensitive_data")], messages=messages))
    first = next(r for r in s.rows.values() if r["request_messages"] == conversation[0])
    s.finding("m-token", first["request_id"], "github_token", "secret", 10)
    s.finding("m-token", first["request_id"], "github_token", "secret", 90)
    s.finding("m-mail", first["request_id"], "email", "pii", 5, excepted=True)
    s.finding("m-late", "late", "aws_access_key", "secret", 0, at=datetime(2026, 11, 9, tzinfo=TZ))
    s.client.insert(f"{s.database}.audit_bodies", [["m-token", "full", "payments",
                                                    "acme/payments-api", "user", "r", AT, AT, 40,
                                                    2, SECRET_TEXT]],
                    column_names=["message_hash", "body_policy", "team", "repo", "role",
                                  "first_request_id", "first_seen", "expires_at", "chars",
                                  "findings", "text"])
    bob_first = next(r for r in s.rows.values() if r["user"] == "bob" and r["received_at"] == AT)
    s.reprice(bob_first, Decimal("0.500000000001"))
    return s


def report_for(store: Store, team: str | None = None) -> PolicyReport:
    window = ReportWindow.parse(SINCE, UNTIL, ZONE, now=datetime.now(UTC), team=team)
    return build_policy_report(client_query(store.client), store.database, SETTINGS.egress, window)


def cost(store: Store, **match: Any) -> Decimal:
    """Σ cost of the stored calls (latest version) in the window matching ``match``."""
    start, end = datetime(2026, 11, 2, tzinfo=TZ), datetime(2026, 11, 9, tzinfo=TZ)
    return sum((Decimal(r["cost_usd"]) for r in store.rows.values()
                if start <= r["received_at"] < end
                and all(r[k] == v for k, v in match.items())), Decimal(0))


def test_counts_per_rule_status_and_spend_to_the_cent(store: Store) -> None:
    report = report_for(store)
    rules = {rule.rule: rule for rule in report.rules}
    assert list(rules) == ["payments-restricted", "secret-models", "sensitive-data"]
    pay = rules["payments-restricted"]
    assert (pay.mode, dict(pay.calls)) == ("audit", {"audit": 4, "excepted": 2})
    assert (len(pay.teams), sorted(pay.users), len(pay.repos)) == (1, ["bob", "carol"], 2)
    assert pay.repos.most_common() == [("acme/payments-api", 3), ("acme/payments-web", 1)]
    assert pay.cost_usd["audit"] == cost(store, repo="acme/payments-api", user="bob") + cost(
        store, user="carol")
    assert pay.cost_usd["excepted"] == cost(store, user="alice") > 0
    secret = rules["secret-models"]
    assert (secret.mode, dict(secret.calls), secret.kinds) == (
        "enforce", {"refused": 2}, {"model_not_allowed"})
    assert secret.models.most_common() == [(("anthropic", "claude-sonnet-4-5"), 2)]
    assert dict(rules["sensitive-data"].calls) == {"audit": 3}
    assert report.calls == 12 and report.breaching_calls == 9
    assert report.cost_usd == cost(store)
    payload = report_json(report)
    assert payload["rules"][0]["cost_usd"]["audit"] == f"{pay.cost_usd['audit']:.12f}"
    cents = pay.cost_usd["audit"].quantize(Decimal("0.01"))
    assert f"enforcing it would have blocked 4 calls (${cents:,})" in payload["rules"][0]["summary"]


def test_sensitive_messages_count_once_and_calls_that_resent_them(store: Store) -> None:
    kinds = {s.kind: s for s in report_for(store).sensitive}
    assert set(kinds) == {"github_token", "email"}
    token, mail = kinds["github_token"], kinds["email"]
    assert (token.category, token.messages, token.messages_excepted, token.calls,
            token.calls_excepted) == ("secret", 1, 0, 3, 0)
    assert (mail.category, mail.messages, mail.messages_excepted, mail.calls,
            mail.calls_excepted) == ("pii", 1, 1, 2, 2)
    assert (token.teams, token.repos, token.users) == (1, 1, 1)


def test_exceptions_used_and_stale(store: Store) -> None:
    report = report_for(store)
    uses = {use.index: use for use in report.exceptions}
    assert [uses[i].calls for i in range(4)] == [2, 0, 2, 0]
    assert [uses[i].stale for i in range(4)] == [False, True, False, True]
    assert [uses[i].expired for i in range(4)] == [False, False, False, True]
    assert report.uncovered_excepted_calls == 0


def test_team_filter(store: Store) -> None:
    rules = {rule.rule: rule for rule in report_for(store, team="data").rules}
    assert rules["secret-models"].blocked == 2 and rules["payments-restricted"].blocked == 0
    assert rules["payments-restricted"].calls["excepted"] == 0


def test_formats_hold_the_figures_and_never_a_message_text(store: Store) -> None:
    report = report_for(store)
    payload = json.loads(render(report, "json"))
    assert set(payload) == {"window", "totals", "rules", "sensitive", "exceptions",
                            "uncovered_excepted_calls"}
    assert payload["window"] == {"since": "2026-11-02T00:00:00+01:00",
                                 "until": "2026-11-09T00:00:00+01:00", "timezone": ZONE,
                                 "team": None}
    rule = payload["rules"][0]
    assert set(rule) == {"rule", "mode", "kinds", "would_block_calls", "audit_calls",
                         "refused_calls", "excepted_calls", "teams", "users", "repos", "cost_usd",
                         "top_repos", "top_models", "summary"}
    assert rule["top_repos"][0] == {"repo": "acme/payments-api", "calls": 3}
    assert payload["exceptions"][1] | {"calls": 0} == {
        "index": 1, "rule": "payments-restricted", "repos": ["acme/payments-legacy"],
        "teams": [], "users": [], "kinds": [], "until": None, "reason": "migrating", "calls": 0,
        "status": "stale", "expired": False}
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert [r["section"] for r in rows].count("exception") == 4
    assert next(r for r in rows if r["rule"] == "secret-models")["refused_calls"] == "2"
    markdown = render(report, "markdown")
    assert "| payments-restricted | audit |" in markdown and "Stale" in markdown
    for text in (markdown, render(report, "csv"), render(report, "json")):
        assert SECRET_TEXT not in text and "NEVER-PRINT" not in text


def test_window_parsing() -> None:
    now = datetime(2026, 11, 10, 12, tzinfo=UTC)
    window = ReportWindow.parse("2026-11-02", None, ZONE, now=now)
    assert (window.start, window.end) == (datetime(2026, 11, 1, 23, tzinfo=UTC), now)
    assert ReportWindow.parse("2026-11-02T09:30Z", "2026-11-03 10:00", ZONE, now=now).end == \
        datetime(2026, 11, 3, 9, tzinfo=UTC)
    for since, until in (("2026-11-05", "2026-11-05"), ("yesterday", None)):
        with pytest.raises(ValueError):
            ReportWindow.parse(since, until, ZONE, now=now)


def write_config(path: Path, chdb: ClickHouseSettings, database: str, store_port: int) -> str:
    path.write_text(yaml.safe_dump({"timezone": ZONE, "clickhouse": {"dsn": chdb.dsn,
                                                                     "database": database},
                                    "store": {"host": "127.0.0.1", "port": store_port},
                                    "egress": EGRESS}), encoding="utf-8")
    return str(path)


def test_cli_reads_through_the_store_query_endpoint(
        store: Store, tmp_path: Path, chdb_settings: ClickHouseSettings,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in STORE_TOKEN_ENV.items():
        monkeypatch.setenv(name, value)
    server = QueryServer(store.client, "127.0.0.1", free_port(), access=store_access())
    server.start()
    try:
        config = write_config(tmp_path / "m.yaml", chdb_settings, store.database,
                              int(server.url.rsplit(":", 1)[1]))
        assert main(["--config", config, "policy", "report", "--since", SINCE, "--until", UNTIL,
                     "--format", "json"]) == 0
        payload = orjson.loads(capsys.readouterr().out)
        out = tmp_path / "report.md"
        assert main(["--config", config, "policy", "report", "--since", SINCE, "--until", UNTIL,
                     "--team", "data", "--output", str(out)]) == 0
    finally:
        server.stop()
    assert payload == report_json(report_for(store))
    assert "refused 2 calls" in out.read_text(encoding="utf-8")


def test_cli_errors_are_messages_not_tracebacks(tmp_path: Path, chdb_settings: ClickHouseSettings,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "m.yaml", chdb_settings, "unused", free_port())
    assert main(["--config", config, "policy", "report", "--since", SINCE]) == 1
    assert "not reachable" in capsys.readouterr().err
    assert main(["--config", config, "policy", "report", "--since", UNTIL, "--until", SINCE]) == 2
    assert "window is empty" in capsys.readouterr().err
