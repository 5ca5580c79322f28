"""Budget-alert configuration: bad webhooks and missing secrets fail at start-up."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from meterline.reports import AlertConfigError, create_scheduler, register_alert_job
from meterline.schemas import BudgetSettings, Settings, TeamSettings, load_settings
from tests.harness import REPO_ROOT


def write_config(path: Path, teams: list[dict[str, object]], **extra: object) -> str:
    path.write_text(yaml.safe_dump({
        "clickhouse": {"dsn": f"chdb://{path.parent / 'clickhouse'}"}, "teams": teams, **extra}))
    return str(path)


TEAMS: list[dict[str, object]] = [
    {"name": "platform", "budget_usd": 100, "slack_webhook_env": "PLATFORM_SLACK"},
    {"name": "payments", "budget_usd": 50, "slack_webhook_env": "PAYMENTS_SLACK"},
    {"name": "data"},
]


def test_missing_secret_and_malformed_url_are_reported_together_at_start_up(
        tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "meterline.yaml", TEAMS),
                             environ={"PAYMENTS_SLACK": "hooks.slack.com/services/T/B/x"})
    scheduler = create_scheduler(settings)
    with pytest.raises(AlertConfigError) as caught:
        register_alert_job(scheduler, settings, client=None)
    assert caught.value.problems == [
        "teams.0 (platform): slack_webhook_env names $PLATFORM_SLACK, which is not set in the "
        "environment; export the team's Slack incoming-webhook URL there",
        "teams.1 (payments): the Slack webhook URL in $PAYMENTS_SLACK is not an absolute "
        "http(s) URL",
    ]
    assert "hooks.slack.com/services/T/B/x" not in str(caught.value)
    assert scheduler.get_jobs() == []


def test_good_webhooks_register_the_job(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "meterline.yaml", TEAMS), environ={
        "PLATFORM_SLACK": "https://hooks.slack.com/services/T0/B0/abc",
        "PAYMENTS_SLACK": "http://127.0.0.1:9/relay"})
    scheduler = create_scheduler(settings)
    alerts = register_alert_job(scheduler, settings, client=None)
    assert alerts is not None and len(alerts.budgets) == 2
    (job,) = scheduler.get_jobs()
    assert job.id == "budget-alerts"


def test_no_budgets_or_disabled_means_no_job() -> None:
    scheduler = create_scheduler(Settings())
    assert register_alert_job(scheduler, Settings(), client=None) is None
    disabled = Settings(teams=[TeamSettings(name="t", budget_usd=Decimal(1))],
                        budgets=BudgetSettings(enabled=False))
    assert register_alert_job(scheduler, disabled, client=None) is None
    assert scheduler.get_jobs() == []


def test_settings_refuse_bad_thresholds_webhooks_and_timeouts() -> None:
    with pytest.raises(ValidationError, match="0 < threshold <= 10"):
        BudgetSettings(thresholds=[Decimal(80)])
    with pytest.raises(ValidationError, match="not a Slack incoming webhook"):
        TeamSettings(name="t", slack_webhook=SecretStr("http://hooks.slack.com/services/x"))
    with pytest.raises(ValidationError, match="claim_timeout_s must exceed"):
        BudgetSettings(claim_timeout_s=10)
    assert BudgetSettings(thresholds=[Decimal("1"), Decimal("0.5"), Decimal("1")]).thresholds == [
        Decimal("0.5"), Decimal("1")]


def test_cli_exits_2_with_the_problem_before_touching_the_store(tmp_path: Path) -> None:
    config = write_config(tmp_path / "meterline.yaml", TEAMS[:1])
    result = subprocess.run(
        [sys.executable, "-m", "meterline.cli.main", "--config", config, "alerts", "check",
         "--dry-run"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert "$PLATFORM_SLACK, which is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "clickhouse").exists()
