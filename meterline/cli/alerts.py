"""``meterline alerts check [--dry-run] [--at TIME]``: the budget-alert check on demand.

The same ``reports.BudgetAlerts.check`` the store's scheduler runs every few
minutes, with the same ledger, so running it by hand never sends an alert the
scheduler already sent (nor the other way round). ``--dry-run`` claims and
sends nothing: it prints each alert that is due, with the exact Block Kit
payload a real check would post.

Where the data is decides how it runs (as ``meterline report chargeback``):

- ClickHouse server (``http://`` DSN): connect directly.
- Embedded chdb and a store running: the store owns the data, so it runs the
  check as its ``alerts.check`` job (``POST /jobs/alerts.check``), with the
  scheduler's own instance and lock, and this command prints the result.
- Embedded chdb and no store running: open the data here, applying pending
  migrations as the store would at start-up.

An alert whose team has no usable webhook prints as ``not delivered`` with the
reason (``no webhook: $SLACK_WEBHOOK_DATA is not set``); it is recorded, not a
failure. A dry run never needs a webhook.

Exit status: 0 done (nothing failed), 1 an alert could not be delivered, the
store was unavailable, or its job failed or is not offered, 2 the alert
configuration is unusable under ``budgets.require_webhooks`` (missing webhook
secret, malformed URL), reported before anything is opened.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO

from meterline.schemas import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alerts`` and its subcommands to the CLI."""
    alerts = commands.add_parser("alerts", help="budget alerts").add_subparsers(
        dest="alerts_command", required=True)
    check = alerts.add_parser("check", help="check budgets now and send what is due")
    check.add_argument("--dry-run", action="store_true",
                       help="claim and send nothing; print what would be sent")
    check.add_argument("--at", default="",
                       help="check as of this ISO time (default: now), e.g. 2026-11-10T09:00Z")
    check.set_defaults(run=run_check_command)


def run_check_command(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.reports import AlertConfigError, BudgetAlerts
    from meterline.reports.alerts_config import alert_destinations
    from meterline.reports.alerts_job import CHECK_JOB, check_result, parse_at
    from meterline.sinks import SinkError, connect, migrate

    try:
        now = parse_at(args.at) if args.at else datetime.now(UTC)
    except ValueError as exc:
        print(f"meterline alerts check: --at {exc}", file=sys.stderr)
        return 2
    if args.dry_run:  # a dry run sends nothing, so it never needs a webhook
        settings = settings.model_copy(update={"budgets": settings.budgets.model_copy(
            update={"require_webhooks": False})})
    try:
        alert_destinations(settings)
    except AlertConfigError as exc:
        print(f"meterline alerts check: {exc}", file=sys.stderr)
        return 2
    if settings.clickhouse.embedded:
        from meterline.sinks import store_endpoint
        from meterline.sinks.jobs import JobError, StoreNotRunning, UnknownJob, remote_job

        store = store_endpoint(settings)
        store_url = store.url
        try:
            remote = remote_job(store_url, CHECK_JOB, {"dry_run": args.dry_run,
                                                       "at": now.isoformat()}, timeout_s=600,
                                token=store.operator_token)
        except StoreNotRunning:
            pass  # nobody holds the data: open it here
        except UnknownJob:
            print(f"meterline alerts check: the store at {store_url} owns the embedded "
                  f"ClickHouse but does not offer the {CHECK_JOB!r} job (an older store?); it "
                  f"checks budgets every {settings.budgets.check_interval_s:g} s on its own.",
                  file=sys.stderr)
            return 1
        except JobError as exc:
            print(f"meterline alerts check: the store's check failed: {exc}", file=sys.stderr)
            return 1
        else:
            return print_result(remote, sys.stdout)
    try:
        client = connect(settings.clickhouse)
        if settings.clickhouse.embedded:
            migrate(client, settings.clickhouse)
        result = check_result(BudgetAlerts(client, settings.clickhouse.database, settings), now,
                              dry_run=args.dry_run)
    except SinkError as exc:
        print(f"meterline alerts check: the store is unavailable: {exc}", file=sys.stderr)
        return 1
    return print_result(result, sys.stdout)


#: How a status reads in the command's output, where its name is not plain enough.
_SHOWN_STATUS = {"no_destination": "not delivered"}


def print_result(result: dict[str, Any], out: TextIO) -> int:
    """One line per alert, and in a dry run the payload that would be posted; the exit status."""
    from meterline.reports.alerts_message import percent, usd

    dry_run = bool(result["dry_run"])
    outcomes: list[dict[str, Any]] = result["outcomes"]
    out.write(f"{'dry run' if dry_run else 'check'} at {result['now']}: {result['budgets']} "
              f"budgets, {len(outcomes)} alerts due\n")
    for outcome in outcomes:
        status = _SHOWN_STATUS.get(outcome["status"], outcome["status"])
        line = (f"{status:<14} {outcome['key']}  {usd(Decimal(outcome['spend_usd']))} "
                f"of {usd(Decimal(outcome['budget_usd']))} ({percent(Decimal(outcome['used']))})")
        if outcome["superseded"]:
            line += f"  covers {', '.join(outcome['superseded'])}"
        if outcome["error"]:
            line += f"  {'' if outcome['status'] == 'no_destination' else 'error: '}{outcome['error']}"
        out.write(line + "\n")
        if dry_run:
            out.write(json.dumps(outcome["payload"], indent=2) + "\n")
    return 1 if any(outcome["status"] == "failed" for outcome in outcomes) else 0

