"""``meterline report chargeback [--month YYYY-MM]``: a month's chargeback on demand.

(``meterline report reconcile`` is in ``reconcile.py``.)

Where the data is decides how it runs:

- ClickHouse server (``http://`` DSN): connect directly and run it here.
- Embedded chdb: only one process may open the data. When a store is
  running, it runs the report as its ``chargeback`` job (``POST
  /jobs/chargeback``) and this command prints the result. When none is
  running (nothing answers on the store's port), this command opens the data
  itself, applies pending migrations as the store would at start-up, and runs
  the report here. A store too old to offer the job is reported, not bypassed.

Exit status: 0 written (and sent, if configured), 1 the report failed (its
reconciliation did not balance, delivery failed, the store's job failed or
the store does not offer it), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from meterline.schemas import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report`` and its subcommands to the CLI."""
    reports = commands.add_parser("report", help="produce reports on demand").add_subparsers(
        dest="report_command", required=True)
    chargeback = reports.add_parser(
        "chargeback", help="the monthly chargeback for finance (HTML, CSV, lead summaries)")
    chargeback.add_argument("--month", default="",
                            help="YYYY-MM in the configured time zone (default: last month)")
    chargeback.add_argument("--output-dir", default="",
                            help="where to write (default: reports.output_dir)")
    chargeback.add_argument("--no-deliver", action="store_true",
                            help="write the files but do not email or post them")
    chargeback.set_defaults(run=run_chargeback_command)
    from .reconcile import register as register_reconcile

    register_reconcile(reports)


def store_is_running(settings: Settings, timeout_s: float = 2.0) -> bool:
    """True when a store process answers on its query endpoint's ``/healthz``."""
    url = f"http://{settings.store.host}:{settings.store.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def run_chargeback_command(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.reports import Month, ReportError, run_chargeback
    from meterline.reports.chargeback_period import month_before
    from meterline.sinks import SinkError, connect, migrate

    try:
        month = Month.parse(args.month) if args.month else month_before(datetime.now(UTC),
                                                                         settings.timezone)
    except ValueError as exc:
        print(f"meterline report chargeback: {exc}", file=sys.stderr)
        return 2
    if settings.clickhouse.embedded:
        from meterline.sinks import store_endpoint
        from meterline.sinks.jobs import JobError, StoreNotRunning, UnknownJob, remote_job

        store = store_endpoint(settings)
        store_url = store.url
        args_json = {"month": str(month), "deliver": not args.no_deliver,
                     **({"output_dir": str(Path(args.output_dir).resolve())}
                        if args.output_dir else {})}
        try:
            result = remote_job(store_url, "chargeback", args_json, token=store.operator_token)
        except StoreNotRunning:
            pass  # nobody holds the data: open it here
        except UnknownJob:
            print(f"meterline report chargeback: the store at {store_url} owns the embedded "
                  f"ClickHouse at {settings.clickhouse.dsn} but does not offer the chargeback "
                  f"job; restart it with this version, or stop it and run this command again.",
                  file=sys.stderr)
            return 1
        except JobError as exc:
            print(f"meterline report chargeback: {month} FAILED in the store: {exc}",
                  file=sys.stderr)
            return 1
        else:
            _print_summary(result, "in the store")
            return 0
    try:
        client = connect(settings.clickhouse)
        if settings.clickhouse.embedded:
            migrate(client, settings.clickhouse)
        run = run_chargeback(client, settings.clickhouse.database, settings, month,
                             output_dir=Path(args.output_dir) if args.output_dir else None,
                             deliver=not args.no_deliver)
    except (ReportError, SinkError) as exc:
        print(f"meterline report chargeback: {month} FAILED: {exc}", file=sys.stderr)
        return 1
    _print_summary(run.summary(), "here")
    return 0


def _print_summary(summary: Mapping[str, Any], where: str) -> None:
    print(f"chargeback {summary['month']}: {summary['total_usd']} USD over "
          f"{summary['requests']:,} requests, reconciled with the events ledger "
          f"(run {summary['run_id']}, {where})")
    saved, would_save = (summary.get(name) for name in ("routing_saved_usd",
                                                        "shadow_would_save_usd"))
    if saved is not None and would_save is not None and (Decimal(saved) or Decimal(would_save)):
        print(f"routing saved {saved} USD in {summary['month']}; shadow rules would save "
              f"{would_save} USD more")
    for path in summary["files"]:
        print(path)
