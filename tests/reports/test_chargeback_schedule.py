"""The scheduled chargeback: the 1st of the month in the configured zone, for the month before."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from meterline.reports import register_chargeback, register_jobs
from meterline.reports.chargeback import REPORT, chargeback_job, run_previous_month
from meterline.reports.chargeback_ledger import RunLedger
from meterline.schemas import Settings
from meterline.sinks import JobRegistry
from tests.reports.chargeback_data import MONTH, MONTH_START, call
from tests.traffic import load_events


def test_the_job_fires_on_the_configured_day_and_hour_in_the_zone() -> None:
    settings = Settings(timezone="America/New_York", reports={"chargeback_cron": "30 7 2 * *"})
    scheduler = BackgroundScheduler(timezone=settings.timezone)
    register_chargeback(scheduler, settings, connect=lambda: None)
    job = scheduler.get_job(REPORT)
    now = datetime(2026, 10, 15, 12, tzinfo=UTC)
    fire = job.trigger.get_next_fire_time(None, now)
    assert fire == datetime(2026, 11, 2, 7, 30, tzinfo=ZoneInfo("America/New_York"))
    default = Settings(timezone="Europe/Berlin")
    scheduler = BackgroundScheduler(timezone=default.timezone)
    register_chargeback(scheduler, default, connect=lambda: None)
    fire = scheduler.get_job(REPORT).trigger.get_next_fire_time(None, now)
    assert fire == datetime(2026, 11, 1, 6, tzinfo=ZoneInfo("Europe/Berlin"))


def test_a_disabled_chargeback_is_not_scheduled() -> None:
    settings = Settings(reports={"chargeback_enabled": False})
    scheduler = BackgroundScheduler()
    register_chargeback(scheduler, settings, connect=lambda: None)
    assert scheduler.get_jobs() == []


def test_a_bad_cron_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="five-field crontab"):
        Settings(reports={"chargeback_cron": "monthly"})


@pytest.mark.store
def test_the_scheduled_run_reports_the_month_that_just_ended(clickhouse: tuple[Any, str],
                                                             tmp_path: Path) -> None:
    client, database = clickhouse
    settings = Settings(timezone="Europe/Berlin", clickhouse={"database": database},
                        reports={"output_dir": str(tmp_path)},
                        teams=[{"name": "Zürich-Daten", "cost_centre": "CC-9900"}])
    load_events(client, database, settings, [call(MONTH_START)])
    # 06:00 on 1 November in Berlin is still 05:00 UTC on 1 November: October is reported.
    run = run_previous_month(settings, lambda: client,
                             now=lambda: datetime(2026, 11, 1, 5, tzinfo=UTC))
    assert str(run.month) == MONTH and run.chargeback.requests == 1
    assert run.csv.exists()
    (record,) = RunLedger(client, database).runs(REPORT, MONTH)
    assert record.status == "succeeded"


@pytest.mark.store
def test_the_store_job_runs_a_month_and_answers_its_summary(clickhouse: tuple[Any, str],
                                                            tmp_path: Path) -> None:
    client, database = clickhouse
    settings = Settings(timezone="Europe/Berlin", clickhouse={"database": database},
                        teams=[{"name": "Zürich-Daten", "cost_centre": "CC-9900"}])
    load_events(client, database, settings, [call(MONTH_START), call(MONTH_START)])
    summary = chargeback_job(settings, lambda: client,
                             {"month": MONTH, "output_dir": str(tmp_path), "deliver": False})
    assert summary["month"] == MONTH and summary["requests"] == 2 and summary["reconciled"]
    assert summary["total_usd"] > 0
    assert all(Path(path).is_relative_to(tmp_path) for path in summary["files"])
    with pytest.raises(ValueError, match="YYYY-MM"):
        chargeback_job(settings, lambda: client, {"month": "October"})


@pytest.mark.store
def test_the_store_registers_the_schedule_and_the_on_demand_job(clickhouse: tuple[Any, str]) -> None:
    client, database = clickhouse
    settings = Settings(clickhouse={"database": database})
    scheduler = BackgroundScheduler(timezone=settings.timezone)
    jobs = JobRegistry()
    register_jobs(scheduler, settings, client, jobs=jobs)
    assert scheduler.get_job(REPORT) is not None
    assert REPORT in jobs.names()
