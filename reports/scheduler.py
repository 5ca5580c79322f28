"""The report scheduler: one APScheduler instance in the process that owns the store.

Jobs are added by the report modules (budget alerts, chargeback) as they are
built; the scheduler itself only owns timing, the time zone, and shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

from meterline.schemas import Settings
from meterline.sinks import connect

from .alerts import BudgetAlerts
from .alerts_job import JobRegistrar, register_check_job
from .chargeback import register_chargeback, register_chargeback_job

log = logging.getLogger(__name__)

ALERT_JOB_ID = "budget-alerts"


def create_scheduler(settings: Settings) -> BackgroundScheduler:
    """A scheduler in the configured time zone, not yet started."""
    return BackgroundScheduler(timezone=settings.timezone,
                               job_defaults={"coalesce": True, "max_instances": 1})


def register_alert_job(scheduler: BaseScheduler, settings: Settings, client: Any, *,
                       database: str | None = None,
                       clock: Callable[[], datetime] | None = None) -> BudgetAlerts | None:
    """Add the budget-alert check, every ``budgets.check_interval_s``, first run at start.

    Called at start-up, before ``scheduler.start()``: raises ``AlertConfigError``
    there if a webhook secret is missing or unusable. ``client`` must be able to
    write (the alert ledger); returns None when alerts are off or no budget is set.
    """
    if not settings.budgets.enabled:
        log.info("budget alerts disabled (budgets.enabled is false)")
        return None
    alerts = BudgetAlerts(client, database or settings.clickhouse.database, settings, clock=clock)
    if not alerts.budgets:
        log.info("no budgets configured: budget alerts not scheduled")
        return None
    scheduler.add_job(alerts.run_scheduled, "interval", seconds=settings.budgets.check_interval_s,
                      id=ALERT_JOB_ID, name="budget alerts", replace_existing=True,
                      next_run_time=datetime.now(UTC))
    log.info("budget alerts: %d budgets checked every %g s", len(alerts.budgets),
             settings.budgets.check_interval_s)
    return alerts


def register_jobs(scheduler: BaseScheduler, settings: Settings, client: Any,
                  jobs: JobRegistrar | None = None) -> None:
    """Every report job the store process runs; raises at start-up on bad configuration.

    ``jobs``, the store's ``sinks.JobRegistry`` when given, also gets the
    on-demand jobs (``alerts.check``, ``chargeback``) that the CLI reaches over
    ``POST /jobs``.
    """
    alerts = register_alert_job(scheduler, settings, client)
    if jobs is not None:
        register_check_job(jobs, settings, client, alerts)
    register_chargeback(scheduler, settings, lambda: connect(settings.clickhouse))
    if jobs is not None:
        register_chargeback_job(jobs, settings, lambda: connect(settings.clickhouse))
