"""Budget-alert configuration: a missing webhook is recorded, and fails start-up only when strict."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from meterline.reports import AlertConfigError, create_scheduler, register_alert_job
from meterline.reports.alerts_config import alert_destinations
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


STRICT = {"budgets": {"require_webhooks": True}}


def test_strict_missing_secret_and_malformed_url_are_reported_together_at_start_up(
        tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "meterline.yaml", TEAMS, **STRICT),
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


def test_lenient_by_default_teams_without_webhooks_are_named_and_the_rest_runs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(write_config(tmp_path / "meterline.yaml", TEAMS),
                             environ={"PAYMENTS_SLACK": "hooks.slack.com/services/T/B/x"})
    scheduler = create_scheduler(settings)
    with caplog.at_level("WARNING"):
        alerts = register_alert_job(scheduler, settings, client=None)
    assert alerts is not None and len(alerts.budgets) == 2
    assert [job.id for job in scheduler.get_jobs()] == ["budget-alerts"]
    warnings = [record.getMessage() for record in caplog.records]
    assert any("budget alerts not delivered: teams.0 (platform)" in line
               and "$PLATFORM_SLACK" in line for line in warnings), warnings
    assert any("teams.1 (payments)" in line for line in warnings), warnings
    assert not any("hooks.slack.com/services/T/B/x" in line for line in warnings)
    destinations = alert_destinations(settings)
    assert destinations.urls == {}
    assert destinations.undeliverable == {
        "platform": "no webhook: $PLATFORM_SLACK is not set",
        "payments": "webhook unusable: the URL in $PAYMENTS_SLACK is not an absolute http(s) URL"}


def run_cli(tmp_path: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterline.cli.main", "--config", config, "alerts", "check",
         *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_a_dry_run_never_needs_a_webhook_even_when_strict(tmp_path: Path) -> None:
    config = write_config(tmp_path / "meterline.yaml", TEAMS[:1], **STRICT)
    result = run_cli(tmp_path, config, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run at" in result.stdout and "1 budgets" in result.stdout


def test_strict_cli_exits_2_with_the_problem_before_touching_the_store(tmp_path: Path) -> None:
    config = write_config(tmp_path / "meterline.yaml", TEAMS[:1], **STRICT)
    result = run_cli(tmp_path, config)
    assert result.returncode == 2, result.stderr
    assert "$PLATFORM_SLACK, which is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "clickhouse").exists()
