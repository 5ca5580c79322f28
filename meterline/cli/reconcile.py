"""``meterline report reconcile``: the ledger checked against the providers' own reports.

Runs the store's ``reconcile_providers`` job (``reports/reconcile_providers.py``)
for UTC days ``--from`` ≤ day < ``--to`` (default: the last
``reconcile.lookback_days`` days), in the store when one is running, else here.
Prints "ledger matches provider reports", or each difference, then the spend
the providers report under keys the gateway does not hold.

Exit status: 0 the ledger matches and nothing bypassed the gateway; 1 a
difference, unmetered spend, or a provider that could not be read; 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from meterline.schemas import Settings

JOB = "reconcile_providers"


def run_reconcile(settings: Settings, job_args: Mapping[str, Any]) -> dict[str, Any]:
    """The job's summary, from the running store or, when none runs, from here."""
    from meterline.services.store_jobs import run_job_directly
    from meterline.sinks import StoreNotRunning, remote_job, store_endpoint

    store = store_endpoint(settings)
    try:
        return remote_job(store.url, JOB, job_args, token=store.operator_token)
    except StoreNotRunning:
        return run_job_directly(settings, JOB, job_args)


def print_reconcile(summary: Mapping[str, Any], out: Any = sys.stdout, *,
                    verbose: bool = False) -> bool:
    """The result as a newcomer reads it (``verbose``: each unmetered day and model too);
    True when everything matches."""
    for name, state in summary["sources"].items():
        if state != "checked":
            print(f"{name}: {state}", file=out)
    checked = [name for name, state in summary["sources"].items() if state == "checked"]
    span = f"{summary['from']} to {summary['to']} (UTC days, 'to' excluded)"
    if summary["differences"]:
        print(f"ledger differs from provider reports, {span}:", file=out)
        for line in summary["differences"]:
            print(f"  {line}", file=out)
    elif checked:
        print(f"ledger matches provider reports: {summary['compared']} model-days of "
              f"{', '.join(checked)}, {span}", file=out)
    if summary["unmetered"]:
        print(f"unmetered spend, ${Decimal(summary['unmetered_usd']):.2f} that bypassed the "
              "gateway (usage under provider keys the gateway does not hold):", file=out)
        for key in summary["unmetered_keys"]:
            print(f"  {key['provider']} key {key['api_key_id']} ({key['scope']}): "
                  f"${Decimal(key['cost_usd']):.2f}, {key['first_day']} to {key['last_day']}, "
                  f"{', '.join(key['models'])}", file=out)
        if verbose:
            for line in summary["unmetered"]:
                print(f"    {line}", file=out)
    if summary.get("alert_error"):
        print(f"(not alerted: {summary['alert_error']})", file=out)
    return bool(summary["matches"])


def _command(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.sinks import JobArgumentError, JobError

    job_args: dict[str, Any] = {"alert": not args.no_alert}
    job_args.update({k: v for k, v in (("from", args.start), ("to", args.end)) if v})
    try:
        summary = run_reconcile(settings, job_args)
    except JobArgumentError as exc:
        print(f"meterline report reconcile: {exc}", file=sys.stderr)
        return 2
    except JobError as exc:
        print(f"meterline report reconcile: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0 if print_reconcile(summary, verbose=args.verbose) else 1


def register(reports: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = reports.add_parser(
        "reconcile", help="check the ledger against the providers' usage and cost reports")
    parser.add_argument("--from", dest="start", default="", help="first UTC day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", default="", help="day after the last (exclusive)")
    parser.add_argument("--verbose", action="store_true",
                        help="list each day and model of the unmetered spend")
    parser.add_argument("--no-alert", action="store_true",
                        help="store the findings but post nothing to Slack")
    parser.set_defaults(run=_command)
