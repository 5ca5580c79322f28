"""The monthly chargeback run: read, reconcile, write, send, record.

``run_chargeback`` produces one month's chargeback for finance. It is called
by the scheduler (``register_chargeback``: the previous month, on the
configured cron in ``Settings.timezone``) and on demand by
``meterline report chargeback --month YYYY-MM``. It blocks on ClickHouse and
on the optional SMTP/Slack delivery; it needs a *writable* client, because it
records the run in ``report_runs``.

The steps, and what each guarantees:

1. Record the run as ``running``: a run that dies leaves a visible trace.
2. Read the figures from the duplicate-safe ``spend_hourly`` rollup (this
   month, last month's team totals, spend per day): aggregates only.
3. Reconcile: Σ cost and distinct request ids from ``events FINAL``, computed
   independently, must equal the report's total and request count exactly;
   so must the routing savings per team and rule and the month's savings
   totals (``chargeback_savings``).
   The footer also carries the check against the providers' own reports for
   the month's days (``reconcile_providers``), as the reconcile job stored it.
   Events still arriving can make one pair of reads disagree, so a mismatch
   is read once more; if it persists the run fails with
   ``ReconciliationMismatch`` and *nothing* is written or sent.
4. Render HTML, CSV and lead summaries into a staging directory beside the
   month's directory, then swap it into place: re-running a month replaces
   all its files (a lead removed from the config loses their old file too),
   and readers never see a half-written set.
5. Deliver by email and/or Slack, when configured.
6. Record the run as ``succeeded`` with total, request count and files; any
   exception after step 1 records ``failed`` with the error and re-raises.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from meterline.schemas import Settings
from meterline.sinks.errors import SinkError

from .chargeback_csv import render_csv
from .chargeback_delivery import email_report, post_to_slack
from .chargeback_ledger import RunLedger
from .chargeback_model import Chargeback, Reconciliation, build_chargeback
from .chargeback_period import Month, month_before
from .chargeback_query import (
    fetch_daily,
    fetch_lines,
    fetch_refusals,
    fetch_team_totals,
    ledger_totals,
)
from .chargeback_render import render_html, render_lead_summaries
from .chargeback_savings import fetch_savings
from .errors import ReconciliationMismatch
from .reconcile_findings import fetch_provider_check

log = logging.getLogger(__name__)

REPORT = "chargeback"
#: Pause before re-reading a mismatched month: long enough for an in-flight sink batch.
RECHECK_DELAY_S = 2.0


@dataclass(frozen=True, slots=True)
class ChargebackRun:
    """A finished run: where its files are, and the figures they hold."""

    run_id: str
    month: Month
    directory: Path
    html: Path
    csv: Path
    leads: dict[str, Path]
    chargeback: Chargeback

    @property
    def files(self) -> list[Path]:
        return [self.html, self.csv, *self.leads.values()]

    def summary(self) -> dict[str, Any]:
        """What a caller of the store job (or the CLI) is told about the run."""
        rec = self.chargeback.reconciliation
        savings = self.chargeback.savings
        return {"run_id": self.run_id, "month": str(self.month),
                "total_usd": self.chargeback.cost_usd, "requests": self.chargeback.requests,
                "reconciled": rec is not None and rec.balanced,
                "routing_saved_usd": savings.saved_usd if savings else Decimal(0),
                "shadow_would_save_usd": savings.would_save_usd if savings else Decimal(0),
                "files": [str(path) for path in self.files]}


def month_directory(output_dir: Path, month: Month) -> Path:
    """``<output_dir>/chargeback/YYYY-MM``: the stable home of a month's files."""
    return output_dir / REPORT / str(month)


def read_chargeback(client: Any, database: str, settings: Settings, month: Month, *,
                    recheck_delay_s: float = RECHECK_DELAY_S) -> Chargeback:
    """Steps 2 and 3: the month's figures, reconciled against the events ledger."""
    window = month.window(settings.timezone)
    previous = month.previous().window(settings.timezone)
    for attempt in (1, 2):
        chargeback = build_chargeback(
            settings, month, window, fetch_lines(client, database, window),
            fetch_daily(client, database, window), fetch_team_totals(client, database, previous))
        ledger = ledger_totals(client, database, window)
        rec = Reconciliation(chargeback.cost_usd, chargeback.requests, ledger.cost_usd,
                             ledger.requests)
        chargeback.reconciliation = rec
        chargeback.savings = savings = fetch_savings(client, database, window, ledger)
        if rec.balanced and savings.balanced:
            refusals = fetch_refusals(client, database, window)
            for team in chargeback.all_teams:
                team.refused = refusals.get(team.name, {}) if team.attributed else {}
            chargeback.provider_check = fetch_provider_check(client, database, window.first_day,
                                                             window.end_day)
            return chargeback
        if attempt == 1:
            log.warning("chargeback %s does not reconcile yet, reading again in %.1fs",
                        month, recheck_delay_s)
            time.sleep(recheck_delay_s)
    if rec.balanced:
        raise ReconciliationMismatch(
            f"chargeback {month}: the routing savings per team and rule add up to "
            f"{savings.saved_usd} USD saved and {savings.would_save_usd} USD shadow rules would "
            f"save, the month's totals to {savings.total_saved_usd} and "
            f"{savings.total_would_save_usd} USD; events were still arriving: run it again")
    raise ReconciliationMismatch(
        f"chargeback {month}: report total {rec.report_cost_usd} USD over {rec.report_requests} "
        f"requests, events ledger {rec.ledger_cost_usd} USD over {rec.ledger_requests} request "
        f"ids (difference {rec.report_cost_usd - rec.ledger_cost_usd} USD, "
        f"{rec.report_requests - rec.ledger_requests} requests); the rollup disagrees with "
        f"the events: repair it for the month (store job repair_rollups) and run again")


def write_outputs(chargeback: Chargeback, directory: Path, *, run_id: str,
                  generated_at: datetime) -> tuple[Path, Path, dict[str, Path]]:
    """Step 4: render everything into staging, then swap it in as ``directory``."""
    stem = f"{REPORT}-{chargeback.month}"
    directory.parent.mkdir(parents=True, exist_ok=True)
    for leftover in directory.parent.glob(f".{directory.name}.*"):  # from a run that died
        shutil.rmtree(leftover, ignore_errors=True)
    staging = directory.parent / f".{directory.name}.{run_id}.staging"
    (staging / "leads").mkdir(parents=True)
    (staging / f"{stem}.html").write_text(
        render_html(chargeback, generated_at=generated_at, run_id=run_id), encoding="utf-8")
    (staging / f"{stem}.csv").write_bytes(render_csv(chargeback))
    leads = {}
    for lead, (name, text) in render_lead_summaries(chargeback).items():
        (staging / "leads" / name).write_text(text, encoding="utf-8")
        leads[lead] = directory / "leads" / name
    retired = directory.parent / f".{directory.name}.{run_id}.retired"
    if directory.exists():
        directory.rename(retired)
    staging.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)
    return directory / f"{stem}.html", directory / f"{stem}.csv", leads


def run_chargeback(client: Any, database: str, settings: Settings, month: Month, *,
                   output_dir: Path | None = None, deliver: bool = True,
                   recheck_delay_s: float = RECHECK_DELAY_S,
                   now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> ChargebackRun:
    """Produce, reconcile, write and (optionally) send ``month``'s chargeback; record the run."""
    run_id = uuid.uuid4().hex[:16]
    ledger = RunLedger(client, database)
    record = ledger.start(run_id, REPORT, str(month), now())
    try:
        chargeback = read_chargeback(client, database, settings, month,
                                     recheck_delay_s=recheck_delay_s)
        directory = month_directory(Path(output_dir or settings.reports.output_dir).resolve(), month)
        html, csv, leads = write_outputs(chargeback, directory, run_id=run_id,
                                         generated_at=now())
        run = ChargebackRun(run_id, month, directory, html, csv, leads, chargeback)
        if deliver:
            email_report(settings.reports, chargeback, html, csv, leads)
            post_to_slack(settings.reports, chargeback, html)
    except Exception as exc:
        log.error("chargeback %s failed (run %s): %s", month, run_id, exc)
        try:
            ledger.finish(record, finished_at=now(), status="failed",
                          error=f"{type(exc).__name__}: {exc}")
        except SinkError as ledger_exc:  # the store is down: the original error matters more
            log.error("could not record the failure of run %s: %s", run_id, ledger_exc)
        raise
    ledger.finish(record, finished_at=now(), status="succeeded", total_usd=chargeback.cost_usd,
                  requests=chargeback.requests, files=[str(path) for path in run.files])
    log.info("chargeback %s: %s USD over %d requests, reconciled; written to %s (run %s)",
             month, chargeback.cost_usd, chargeback.requests, directory, run_id)
    return run


def run_previous_month(settings: Settings, connect: Callable[[], Any],
                       now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> ChargebackRun:
    """The scheduled job: the chargeback of the month that ended before ``now`` (local time)."""
    month = month_before(now(), settings.timezone)
    return run_chargeback(connect(), settings.clickhouse.database, settings, month, now=now)


def chargeback_job(settings: Settings, connect: Callable[[], Any],
                   args: Mapping[str, Any]) -> dict[str, Any]:
    """The store job ``chargeback``: ``{"month"?: "YYYY-MM", "output_dir"?: str, "deliver"?: bool}``.

    Runs ``run_chargeback`` in the process that owns the data (default month:
    the last one) and answers ``ChargebackRun.summary()``. Bad arguments raise
    ``ValueError``; a failed run raises its ``ReportError``.
    """
    month_text = str(args.get("month") or "")
    month = Month.parse(month_text) if month_text else month_before(datetime.now(UTC),
                                                                    settings.timezone)
    output_dir = Path(str(args["output_dir"])) if args.get("output_dir") else None
    run = run_chargeback(connect(), settings.clickhouse.database, settings, month,
                         output_dir=output_dir, deliver=bool(args.get("deliver", True)))
    return run.summary()


def register_chargeback_job(jobs: Any, settings: Settings, connect: Callable[[], Any]) -> None:
    """Offer ``chargeback`` on the store's job registry (``POST /jobs/chargeback``).

    ``jobs`` is the store's ``sinks.JobRegistry``; ``connect`` returns a
    writable client, opened per run so the job never shares the sink's.
    """
    jobs.register(REPORT, lambda args: chargeback_job(settings, connect, args))


def register_chargeback(scheduler: Any, settings: Settings, connect: Callable[[], Any]) -> None:
    """Add the monthly chargeback to an APScheduler scheduler (no-op when disabled).

    ``connect`` returns a writable ClickHouse client; it is called per run so a
    job never holds a connection for a month. The cron fires in
    ``Settings.timezone``; a firing delayed by up to a day (a busy scheduler)
    still runs, but one missed while the store was down is not caught up after
    a restart (the job store is in memory): run it with the CLI.
    """
    if not settings.reports.chargeback_enabled:
        return
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(settings.reports.chargeback_cron, timezone=settings.timezone)
    scheduler.add_job(run_previous_month, trigger, args=(settings, connect), id=REPORT,
                      name="monthly chargeback", replace_existing=True,
                      misfire_grace_time=24 * 3600)
