"""The budget-alert check as a store job, and its outcomes as plain JSON-able records.

With embedded ClickHouse only the store process may open the data, so while
a store runs, ``meterline alerts check`` asks it to run the check
(``POST /jobs/alerts.check`` on its query endpoint, ``sinks.jobs``). The job
and the local command both report through ``outcome_record``, so the command
prints the same thing either way.

Job arguments: ``{"dry_run": bool, "at": ISO time with offset (optional)}``.
Result: ``{"now", "dry_run", "budgets", "outcomes": [record, ...]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from meterline.schemas import Settings

from .alerts import AlertOutcome, BudgetAlerts

CHECK_JOB = "alerts.check"

__all__ = ["CHECK_JOB", "JobRegistrar", "check_job", "check_result", "outcome_record",
           "parse_at", "register_check_job"]


class JobRegistrar(Protocol):
    """What this module needs of the store's ``sinks.JobRegistry``."""

    def register(self, name: str, job: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> None:
        ...


def outcome_record(outcome: AlertOutcome) -> dict[str, Any]:
    """One outcome as JSON-able data: key, status, figures and the Block Kit payload."""
    figures = outcome.assessment
    return {
        "key": outcome.ref.key, "status": outcome.status,
        "spend_usd": str(figures.spend.period_usd), "budget_usd": str(figures.budget.budget_usd),
        "used": str(figures.used), "superseded": list(outcome.superseded),
        "attempts": outcome.attempts, "error": outcome.error,
        "payload": outcome.message.payload(),
    }


def check_result(alerts: BudgetAlerts, now: datetime, *, dry_run: bool) -> dict[str, Any]:
    """Run one check and describe it: what the job answers and the command prints."""
    outcomes = alerts.check(now, dry_run=dry_run)
    return {"now": now.isoformat(), "dry_run": dry_run, "budgets": len(alerts.budgets),
            "outcomes": [outcome_record(outcome) for outcome in outcomes]}


def parse_at(text: str) -> datetime:
    """An ISO 8601 time with an offset (``2026-11-10T09:00Z``); ``ValueError`` otherwise."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r}: give a time zone, e.g. 2026-11-10T09:00Z")
    return moment


def check_job(alerts: BudgetAlerts, clock: Callable[[], datetime]
              ) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The store job: ``alerts.check`` with the arguments above, on the store's own client."""

    def run(args: Mapping[str, Any]) -> dict[str, Any]:
        now = parse_at(str(args["at"])) if args.get("at") else clock()
        return check_result(alerts, now, dry_run=bool(args.get("dry_run", False)))

    return run


def register_check_job(jobs: JobRegistrar, settings: Settings, client: Any,
                       alerts: BudgetAlerts | None = None) -> None:
    """Offer ``alerts.check`` on the store's job registry, sharing the scheduler's ``alerts``.

    Sharing the instance means sharing its process lock with the scheduled
    check; ``client`` must be able to write (the ledger). Raises
    ``AlertConfigError`` at start-up, as the scheduled job does.
    """
    alerts = alerts or BudgetAlerts(client, settings.clickhouse.database, settings)
    jobs.register(CHECK_JOB, check_job(alerts, lambda: datetime.now(UTC)))
