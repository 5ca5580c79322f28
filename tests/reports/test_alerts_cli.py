"""``meterline alerts check`` as an operator runs it: its own process, its own chdb data.

chdb opens one data path per process, so the spend is written by one child
process and the command runs in others, against the same path, as it would
next to a stopped store. Slack is the loopback stand-in in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterline.reports import create_scheduler, register_jobs
from meterline.sinks import JobRegistry, QueryServer
from tests.harness import REPO_ROOT, STORE_TOKEN_ENV, store_access
from tests.reports.budget_traffic import alert_settings, spend
from tests.reports.slack_stub import SlackStub, running_stub

pytestmark = pytest.mark.store

LOAD_SPEND = """
import sys
from datetime import datetime, UTC
from meterline.schemas import load_settings
from meterline.sinks import connect, migrate
from tests.reports.budget_traffic import spend

settings = load_settings(sys.argv[1])
client = connect(settings.clickhouse)
migrate(client, settings.clickhouse)
spend((client, settings.clickhouse.database), settings, 85,
      datetime(2026, 11, 10, 8, tzinfo=UTC), user="bob")
"""


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    yield from running_stub()


def run(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterline.cli.main", "--config", str(config),
                           "--log-level", "WARNING", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=120)


def test_dry_run_prints_the_payload_then_check_sends_it_once(tmp_path: Path,
                                                             slack: SlackStub) -> None:
    config = tmp_path / "meterline.yaml"
    config.write_text(yaml.safe_dump({
        "clickhouse": {"dsn": f"chdb://{tmp_path / 'clickhouse'}"},
        "store": {"port": 1},  # nothing listens there: no store is running
        "teams": [{"name": "platform", "budget_usd": 100, "lead": "dana@example.com",
                   "slack_webhook_env": "TEST_PLATFORM_SLACK"}],
        "prices": [{"model": "meter-1", "provider": "openai", "input_per_mtok": 1_000_000,
                    "output_per_mtok": 0}],
        "budgets": {"retry_base_s": 0.01, "claim_settle_s": 0.05, "forecast": False},
    }))
    env = {**os.environ, "TEST_PLATFORM_SLACK": slack.url}
    loaded = subprocess.run([sys.executable, "-c", LOAD_SPEND, str(config)], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr

    dry = run(config, env, "alerts", "check", "--dry-run", "--at", "2026-11-10T09:00Z")
    assert dry.returncode == 0, dry.stderr
    first_line, status_line, *payload = dry.stdout.splitlines()
    assert first_line == "dry run at 2026-11-10T09:00:00+00:00: 1 budgets, 1 alerts due"
    assert status_line.split() == ["would_send", "team:platform:2026-11:80%", "$85.00", "of",
                                   "$100.00", "(85%)"]
    printed = json.loads("\n".join(payload))
    assert printed["blocks"][0]["text"]["text"] == "Budget alert: team platform passed 80%"
    assert slack.payloads == []

    sent = run(config, env, "alerts", "check", "--at", "2026-11-10T09:00Z")
    assert sent.returncode == 0, sent.stderr
    assert "sent" in sent.stdout.splitlines()[1]
    assert slack.payloads == [printed]

    again = run(config, env, "alerts", "check", "--at", "2026-11-10T09:30Z")
    assert again.returncode == 0, again.stderr
    assert "1 budgets, 0 alerts due" in again.stdout
    assert len(slack.payloads) == 1


def test_while_a_store_runs_the_check_runs_inside_it(tmp_path: Path, slack: SlackStub,
                                                     clickhouse: tuple[Any, str]) -> None:
    """The store's query server offers ``alerts.check``; the command asks it, never opens chdb."""
    client, database = clickhouse
    settings = alert_settings(slack.url)
    spend(clickhouse, settings, 85, datetime(2026, 11, 10, 8, tzinfo=UTC))
    jobs = JobRegistry()
    scheduler = create_scheduler(settings)
    register_jobs(scheduler, settings.model_copy(update={
        "clickhouse": settings.clickhouse.model_copy(update={"database": database})}),
        client, jobs=jobs)
    server = QueryServer(client, "127.0.0.1", 0, jobs=jobs, access=store_access())
    server.start()
    try:
        config = tmp_path / "meterline.yaml"
        port = int(server.url.rsplit(":", 1)[1])
        config.write_text(yaml.safe_dump({
            "clickhouse": {"dsn": f"chdb://{tmp_path / 'never-opened'}"},
            "store": {"port": port},
            "teams": [{"name": "platform", "budget_usd": 100,
                       "slack_webhook_env": "TEST_PLATFORM_SLACK"}]}))
        env = {**os.environ, "TEST_PLATFORM_SLACK": slack.url, **STORE_TOKEN_ENV}
        dry = run(config, env, "alerts", "check", "--dry-run", "--at", "2026-11-10T09:00Z")
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.splitlines()[1].split()[:2] == ["would_send",
                                                          "team:platform:2026-11:80%"]
        assert slack.payloads == []
        sent = run(config, env, "alerts", "check", "--at", "2026-11-10T09:00Z")
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.splitlines()[1].split()[:2] == ["sent", "team:platform:2026-11:80%"]
        assert len(slack.payloads) == 1
        assert not (tmp_path / "never-opened").exists()
    finally:
        server.stop()
