"""The reconcile job against the simulated provider's own usage and cost reports.

Real parts only: the events go through the real enrichment into ClickHouse
(chdb), the simulated provider is a real HTTP server that serves its report
endpoints from what it was told it served, and Slack is the loopback stub.
Every expected figure is computed here from the envelopes, independently of
the job's code.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from meterline.processors import PriceBook
from meterline.reports.provider_reports import Tokens, hint_matches
from meterline.reports.reconcile_findings import fetch_provider_check
from meterline.reports.reconcile_providers import ProviderReconciler
from meterline.schemas import Envelope, Settings
from meterline.services.store_jobs import list_price
from meterline.simulator import create_provider_app
from meterline.simulator.direct_keys import DirectStretch, plant_direct_key, served_call
from meterline.simulator.drive import tell_provider_served
from meterline.simulator.organisation import Organisation
from meterline.simulator.served import provider_key_id
from tests.harness import ThreadedServer
from tests.reports.slack_stub import SlackStub
from tests.traffic import load_events

pytestmark = pytest.mark.store

START = datetime(2026, 10, 5, tzinfo=UTC)
END = datetime(2026, 10, 8, tzinfo=UTC)


@pytest.fixture
def provider() -> Iterator[str]:
    """A simulated provider of this test's own: its reports hold only this test's calls."""
    server = ThreadedServer(create_provider_app()).start()
    yield server.url
    server.stop()


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    stub = SlackStub().up()
    yield stub
    stub.down()


def _settings(org: Organisation, provider_url: str, **extra: Any) -> Settings:
    return Settings(**{**org.settings_overrides(), "demo_upstream": provider_url, **extra})


class Month:
    """Three days of an organisation: the gateway's calls in the ledger, and a direct key."""

    def __init__(self, clickhouse: tuple[Any, str], provider_url: str,
                 gateway_usage: Any = None) -> None:
        self.client, self.database = clickhouse
        self.org = Organisation.demo(seed=5)
        self.settings = _settings(self.org, provider_url)
        traffic = list(self.org.envelopes(START, END, volume=0.5))
        self.gateway, self.direct, stretch = plant_direct_key(self.org, traffic, START, END,
                                                              days=1.0)
        assert stretch is not None and self.direct
        self.stretch: DirectStretch = stretch
        served = [served_call(e, "") for e in self.gateway]
        served += [served_call(e, stretch.key, stretch.workspace) for e in self.direct]
        tell_provider_served(provider_url, [call for call in served if call is not None])
        recorded = [gateway_usage(e) if gateway_usage else e for e in self.gateway]
        load_events(self.client, self.database, self.settings, recorded)

    def reconciler(self, **settings: Any) -> ProviderReconciler:
        config = self.settings.model_copy(update=settings) if settings else self.settings
        return ProviderReconciler(self.client, self.database, config, list_price(config))

    def stored(self, sql: str) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.client.query(
            sql.replace("{db}", self.database)).result_rows
        return rows


def _tokens(envelopes: list[Envelope]) -> Tokens:
    total = Tokens()
    for e in envelopes:
        u = e.usage
        total += Tokens(u.input_tokens, u.cache_read_tokens,
                        u.cache_write_5m_tokens + u.cache_write_1h_tokens, u.output_tokens)
    return total


def _list_cost(envelopes: list[Envelope]) -> Decimal:
    book = PriceBook([], {"anthropic": "anthropic", "openai": "openai"})
    total = Decimal(0)
    for e in envelopes:
        quote = book.quote(e.provider, e.served_model, e.usage, e.received_at)
        total += quote.cost_usd if quote is not None else Decimal(0)
    return total


def test_the_ledger_matches_what_the_provider_served_and_the_direct_key_is_found(
        clickhouse: tuple[Any, str], provider: str) -> None:
    month = Month(clickhouse, provider)
    run = month.reconciler().run(START.date(), END.date())

    assert run.sources == {"openai": "checked", "anthropic": "checked",
                           "vllm": "skipped: no usage report API for a openai_compatible upstream"}
    assert run.differences == [], [f.describe() for f in run.differences]
    billed = [e for e in month.gateway if e.provider in ("openai", "anthropic")
              and e.status == 200]
    model_days = {(e.received_at.date(), e.provider, e.served_model) for e in billed}
    compared = [f for f in run.findings if f.finding == "ledger"]
    assert {(f.day, f.provider, f.model) for f in compared} == model_days
    assert all(f.reported == f.ledger and f.difference_usd == 0 for f in compared), [
        f.describe() for f in compared if f.reported != f.ledger or f.difference_usd]

    # the planted personal key: found, with every token and the exact bill of its calls
    key_id = provider_key_id("anthropic", month.stretch.key)
    assert {f.api_key_id for f in run.unmetered} == {key_id}
    assert {f.scope for f in run.unmetered} == {month.stretch.workspace}
    assert sum((f.reported for f in run.unmetered), Tokens()) == _tokens(month.direct)
    assert sum(f.reported_cost_usd for f in run.unmetered) == _list_cost(month.direct)
    assert all(f.over_tolerance for f in run.unmetered)
    assert not run.matches and run.summary()["differences"] == []

    # stored: one row per finding, read back as the chargeback footer reads it
    (rows,) = month.stored("SELECT count() FROM {db}.provider_reconciliation FINAL")[0]
    assert rows == len(run.findings)
    check = fetch_provider_check(month.client, month.database, date(2026, 10, 1),
                                 date(2026, 11, 1))
    assert check.days_checked == 3 and check.compared == len(compared)
    assert check.unmetered_usd == _list_cost(month.direct) and check.unmetered_keys == 1
    assert check.ledger_cost_usd == check.provider_cost_usd
    assert check.over_tolerance_count == len(run.unmetered) and check.differences == 0


def _drop_cache_reads(model: str, day: date) -> Any:
    """The gateway defect of litellm#11935: a model's cache reads lost on one day."""
    def defect(envelope: Envelope) -> Envelope:
        if envelope.served_model == model and envelope.received_at.date() == day:
            usage = envelope.usage.model_copy(update={"cache_read_tokens": 0})
            return envelope.model_copy(update={"usage": usage})
        return envelope
    return defect


def test_a_usage_defect_is_a_difference_past_tolerance_alerted_once(
        clickhouse: tuple[Any, str], provider: str, slack: SlackStub) -> None:
    day = date(2026, 10, 6)
    month = Month(clickhouse, provider, _drop_cache_reads("claude-sonnet-4-5", day))
    month.settings.reports.slack_webhook = SecretStr(slack.url)
    lost = sum(e.usage.cache_read_tokens for e in month.gateway
               if e.served_model == "claude-sonnet-4-5" and e.received_at.date() == day)
    assert lost > 0

    run = month.reconciler().run(START.date(), END.date())
    (difference,) = run.differences
    assert (difference.day, difference.provider, difference.model) == (
        day, "anthropic", "claude-sonnet-4-5")
    assert difference.reported - difference.ledger == Tokens(cache_read=lost)
    assert difference.difference_usd > 0  # the provider billed the reads the ledger lost
    assert len(slack.payloads) == 1
    text = slack.payloads[0]["text"]
    assert "1 differences" in text and "keys the gateway does not hold" in text
    assert "claude-sonnet-4-5" in str(slack.payloads[0]["blocks"])

    check = fetch_provider_check(month.client, month.database, START.date(), END.date())
    assert check.differences == 1 and check.over_tolerance[0] == difference.describe()

    again = month.reconciler().run(START.date(), END.date())
    assert len(again.differences) == 1 and len(slack.payloads) == 1  # alerted once
    (alerted,) = month.stored("SELECT countIf(alerted) = countIf(over_tolerance) FROM "
                              "{db}.provider_reconciliation FINAL")[0]
    assert alerted


def test_a_tolerance_lets_a_small_difference_through(clickhouse: tuple[Any, str],
                                                     provider: str) -> None:
    month = Month(clickhouse, provider, _drop_cache_reads("claude-haiku-4-5", date(2026, 10, 6)))
    strict = month.reconciler().run(START.date(), END.date(), alert=False)
    (difference,) = strict.differences
    loose = month.settings.reconcile.model_copy(
        update={"tolerance_usd": abs(difference.difference_usd) + 1,
                "tolerance_tokens": (difference.reported - difference.ledger).largest()})
    relaxed = month.reconciler(reconcile=loose).run(START.date(), END.date(), alert=False)
    assert relaxed.differences == []


def test_an_unreadable_provider_fails_alone_and_a_missing_admin_key_is_named(
        clickhouse: tuple[Any, str], provider: str) -> None:
    month = Month(clickhouse, provider)
    settings = month.settings.model_copy(deep=True)
    settings.providers["anthropic"].api_key = SecretStr("sk-ant-api03-real-key-without-admin")
    settings.providers["openai"].base_url = "http://127.0.0.1:9"  # nothing listens
    settings.providers["openai"].api_key = SecretStr("sk-proj-real")
    settings.providers["openai"].admin_key = SecretStr("sk-admin-real")
    run = ProviderReconciler(month.client, month.database, settings,
                             list_price(settings)).run(START.date(), END.date())
    assert run.sources["anthropic"] == ("skipped: no admin key: set "
                                        "providers.anthropic.admin_key_env to the variable "
                                        "that holds it")
    assert run.sources["openai"].startswith("failed: /v1/organization/usage/completions: "
                                            "the provider is unreachable")
    assert "sk-admin-real" not in run.sources["openai"]
    assert not run.matches and run.findings == []


@pytest.mark.parametrize(("hint", "secret", "matches"), [
    ("sk-...wxyz", "sk-abcdefwxyz", True),
    ("sk-...wxyz", "sk-abcdefwxyy", False),
    ("sk-ant-api03-R2D...igAA", "sk-ant-api03-R2Dxxxxxxxxxxxxxx-igAA", True),
    ("sk-ant-api03-R2D...igAA", "sk-ant-api03-R2D", False),
    ("sk-...abcd", "sk-abcd", True),  # a short key: its head and tail overlap
    ("", "", True),  # a call with no key: the demo gateway's
    ("", "sk-abc", False),
])
def test_a_key_is_the_gateways_when_its_redacted_hint_fits_a_secret_it_holds(
        hint: str, secret: str, matches: bool) -> None:
    assert hint_matches(hint, secret) is matches


def test_the_store_schedules_the_daily_check_in_its_time_zone() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from meterline.services.store_jobs import register_provider_reconcile
    from meterline.sinks import JobArgumentError, JobRegistry

    settings = Settings(timezone="Europe/Berlin", reconcile={"cron": "15 6 * * *"})
    scheduler = BackgroundScheduler(timezone=settings.timezone)
    jobs = JobRegistry()
    register_provider_reconcile(scheduler, jobs, settings)
    job = scheduler.get_job("reconcile-providers")
    assert job is not None
    assert str(job.trigger) == "cron[month='*', day='*', day_of_week='*', hour='6', minute='15']"
    assert str(job.trigger.timezone) == "Europe/Berlin"
    with pytest.raises(JobArgumentError, match=r"'to' \(2026-10-01\) must be after"):
        jobs.run("reconcile_providers", {"from": "2026-10-05", "to": "2026-10-01"})
    with pytest.raises(JobArgumentError, match="from: not an ISO date"):
        jobs.run("reconcile_providers", {"from": "last tuesday"})

    off = BackgroundScheduler(timezone="UTC")
    register_provider_reconcile(off, JobRegistry(), Settings(reconcile={"enabled": False}))
    assert off.get_job("reconcile-providers") is None
