"""``meterline simulate`` drives a simulated organisation through the real pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from meterline.simulator.organisation import Organisation
from tests.harness import REPO_ROOT, STORE_TOKEN_ENV, Pipeline, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]


def _simulate(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterline.cli.main", "--config",
                           str(pipeline.config), "simulate", *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, check=True,
                          env={**os.environ, **STORE_TOKEN_ENV})


def test_topic_mode_lands_every_simulated_call_with_its_history(pipeline: Pipeline) -> None:
    result = _simulate(pipeline, "--month", "2026-09", "--seed", "11", "--volume", "0.5",
                       "--report")
    start = datetime(2026, 9, 1, tzinfo=UTC)
    expected = list(Organisation.demo(seed=11, timezone="UTC").envelopes(
        start, datetime(2026, 10, 1, tzinfo=UTC), volume=0.5))
    assert f"sent {len(expected):,} (0 failed)" in result.stderr
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
    # ... and the budget alerts the month's spend makes due, as a dry run
    assert "budget alerts due at 2026-10-01 00:00 UTC (dry run" in result.stderr


def test_gateway_mode_sends_real_calls_with_each_developers_key(pipeline: Pipeline) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    result = _simulate(pipeline, "--mode", "gateway", "--days", "3", "--limit", "40",
                       "--rate", "40")
    assert "sent 40 (0 failed)" in result.stderr, result.stderr
    wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == "40", 120,
               message="40 rows")
    assert pipeline.scalar("SELECT min(received_at) FROM events") >= f"{before:%Y-%m-%d %H:%M:%S}"
    tools = {row[0] for row in pipeline.sql("SELECT DISTINCT tool FROM events")}
    assert tools & {"claude-code", "cursor", "codex"}
    assert int(pipeline.scalar("SELECT uniqExact(user) FROM events")) > 1
