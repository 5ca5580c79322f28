"""``meterline simulate`` drives a simulated organisation through the real pipeline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from meterline.simulator.direct_keys import personal_key, personal_workspace, plant_direct_key
from meterline.simulator.organisation import Organisation
from meterline.simulator.served import provider_key_id
from tests.harness import REPO_ROOT, STORE_TOKEN_ENV, Pipeline, wait_until
from tests.traffic import ROUTING_RULES

pytestmark = [pytest.mark.e2e, pytest.mark.store]


def _simulate(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterline.cli.main", "--config",
                           str(pipeline.config), "simulate", *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, check=True,
                          env={**os.environ, **STORE_TOKEN_ENV})


def test_topic_mode_lands_every_simulated_call_with_its_history(pipeline: Pipeline) -> None:
    result = _simulate(pipeline, "--month", "2026-09", "--seed", "11", "--volume", "0.5",
                       "--report")
    start, end = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)
    org = Organisation.demo(seed=11, timezone="UTC")
    expected, direct, stretch = plant_direct_key(org, list(org.envelopes(start, end, volume=0.5)),
                                                 start, end)
    assert stretch is not None and direct
    assert f"sent {len(expected):,} (0 failed)" in result.stderr
    assert (f"planted: {stretch.developer} makes {stretch.calls:,} anthropic calls with a "
            "personal key, bypassing the gateway") in result.stderr
    wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == str(len(expected)), 180,
               message=f"{len(expected)} rows")
    first, last = pipeline.sql("SELECT min(received_at), max(received_at) FROM events")[0]
    assert first.startswith("2026-09") and last.startswith("2026-09")
    assert pipeline.scalar("SELECT countIf(unpriced) > 0 AND countIf(NOT attributed) > 0 "
                           "FROM events") == "1"
    # --report: the month's chargeback, reconciled, in files a newcomer can open ...
    total = pipeline.scalar("SELECT toString(sum(cost_usd)) FROM events FINAL")
    summary = next(line for line in result.stdout.splitlines() if line.startswith("chargeback "))
    assert summary.startswith("chargeback 2026-09: "), summary
    reported, _, rest = summary.removeprefix("chargeback 2026-09: ").partition(" USD over ")
    assert Decimal(reported) == Decimal(total)  # the events' exact sum, not a rounded one
    assert rest.startswith(f"{len(expected):,} requests, reconciled with the events ledger")
    files = [Path(line) for line in result.stdout.splitlines() if line.startswith("/")]
    assert any(path.suffix == ".html" and path.stat().st_size > 0 for path in files), files
    # ... the ledger against the provider's own reports: it matches, and the planted
    # personal key is found as spend that bypassed the gateway ...
    assert re.search(r"^ledger matches provider reports: \d+ model-days of openai, anthropic, "
                     r"2026-09-01 to 2026-10-01", result.stdout, flags=re.MULTILINE), result.stdout
    (unmetered,) = [line for line in result.stdout.splitlines()
                    if line.startswith("unmetered spend, $")]
    assert "that bypassed the gateway" in unmetered
    key_lines = [line for line in result.stdout.splitlines()
                 if provider_key_id("anthropic", stretch.key) in line]
    assert key_lines and all(stretch.workspace in line for line in key_lines)
    # ... its footer in the chargeback
    html = next(path for path in files if path.suffix == ".html").read_text(encoding="utf-8")
    assert "Against the providers' own reports" in html and "Unmetered" in html
    assert "the ledger matches</span> for the gateway's provider keys" in html
    # ... the same check on demand: exit 1, because spend bypassed the gateway
    again = subprocess.run([sys.executable, "-m", "meterline.cli.main", "--config",
                            str(pipeline.config), "report", "reconcile", "--from", "2026-09-01",
                            "--to", "2026-10-01", "--no-alert", "--verbose"], capture_output=True, text=True,
                           cwd=REPO_ROOT, timeout=120, env={**os.environ, **STORE_TOKEN_ENV})
    assert again.returncode == 1, again.stderr
    assert "ledger matches provider reports: " in again.stdout
    assert unmetered in again.stdout
    days = [line for line in again.stdout.splitlines() if line.startswith("    2026-09-")]
    assert days and all(provider_key_id("anthropic", stretch.key) in line for line in days)
    # ... and the budget alerts the month's spend makes due, as a dry run
    assert "budget alerts due at 2026-10-01 00:00 UTC (dry run" in result.stderr
    # the run ends with the provider check: its verdict is the last thing a newcomer reads
    assert result.stdout.rstrip().splitlines()[-1].startswith("  anthropic key apikey_")
    assert result.stdout.index("dry run at") < result.stdout.index("ledger matches provider")


def test_gateway_mode_sends_real_calls_with_each_developers_key(pipeline: Pipeline) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    result = _simulate(pipeline, "--mode", "gateway", "--days", "3", "--limit", "40",
                       "--rate", "40", "--no-direct-key")
    assert "sent 40 (0 failed)" in result.stderr, result.stderr
    wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == "40", 120,
               message="40 rows")
    assert pipeline.scalar("SELECT min(received_at) FROM events") >= f"{before:%Y-%m-%d %H:%M:%S}"
    tools = {row[0] for row in pipeline.sql("SELECT DISTINCT tool FROM events")}
    assert tools & {"claude-code", "cursor", "codex"}
    assert int(pipeline.scalar("SELECT uniqExact(user) FROM events")) > 1


def test_gateway_mode_sends_the_planted_direct_calls_to_the_provider_itself(
        pipeline: Pipeline) -> None:
    from meterline.reports.provider_reports import fetch_report

    result = _simulate(pipeline, "--mode", "gateway", "--days", "3", "--volume", "0.05",
                       "--rate", "200")
    planted = re.search(r"^planted: (\S+) makes (\d+) anthropic calls", result.stderr,
                        flags=re.MULTILINE)
    assert planted, result.stderr
    developer, calls = planted.group(1), int(planted.group(2))
    assert calls > 0
    sent_line = re.search(r"^sent (\d+) \(0 failed\)", result.stderr, flags=re.MULTILINE)
    assert sent_line, result.stderr
    sent = int(sent_line[1])
    wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == str(sent), 120,
               message=f"{sent} rows")  # the direct calls never reach the gateway
    today = datetime.now(UTC).date()
    report = fetch_report("anthropic", pipeline.simulator_url, "", today,
                          today + timedelta(days=1))
    key = personal_key("anthropic", developer, 7)
    mine = [usage for usage in report.usage
            if usage.api_key_id == provider_key_id("anthropic", key)]
    assert {usage.scope for usage in mine} == {personal_workspace(developer)}
    assert report.keys[provider_key_id("anthropic", key)] == key[:3] + "..." + key[-4:]


def test_a_month_with_a_shadow_and_an_enforced_rule_shows_the_savings(
        tmp_path: Path, broker: str, simulator: str) -> None:
    pipeline = Pipeline(tmp_path, broker, simulator, ROUTING_RULES).start()
    try:
        result = _simulate(pipeline, "--month", "2026-08", "--seed", "5", "--volume", "0.1",
                           "--no-direct-key", "--report")
        moved = re.search(r"^routing rules: ([\d,]+) calls served by an enforce rule's target, "
                          r"([\d,]+) marked by a shadow rule", result.stderr, flags=re.MULTILINE)
        assert moved, result.stderr
        assert int(moved[1].replace(",", "")) > 0 and int(moved[2].replace(",", "")) > 0
        # the cursor calls to sonnet were served, and billed, as haiku
        assert pipeline.scalar("SELECT countIf(served_model = 'claude-sonnet-4-5') FROM events "
                               "WHERE tool = 'cursor' AND requested_model = "
                               "'claude-sonnet-4-5'") == "0"
        assert pipeline.scalar("SELECT count() FROM events WHERE routing_rule = "
                               "'cursor-sonnet-to-haiku'") == moved[1].replace(",", "")
        saved = pipeline.scalar("SELECT toString(sum(counterfactual_cost_usd - cost_usd)) "
                                "FROM events FINAL WHERE routing_rule != ''")
        would = pipeline.scalar("SELECT toString(sum(cost_usd - shadow_cost_usd)) "
                                "FROM events FINAL WHERE shadow_rule = 'opus-to-sonnet'")
        assert Decimal(saved) > 0 and Decimal(would) > 0
        line = re.search(r"^routing saved ([\d.]+) USD in 2026-08; shadow rules would save "
                         r"([\d.-]+) USD more$", result.stdout, flags=re.MULTILINE)
        assert line, result.stdout
        assert (Decimal(line[1]), Decimal(line[2])) == (Decimal(saved), Decimal(would))
        html = next(Path(line) for line in result.stdout.splitlines()
                    if line.startswith("/") and line.endswith(".html")).read_text(encoding="utf-8")
        assert "cursor-sonnet-to-haiku" in html and "opus-to-sonnet" in html
    finally:
        pipeline.stop()
