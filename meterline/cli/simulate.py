"""``meterline simulate``: a simulated organisation's traffic into the running pipeline."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterline.schemas import Envelope, Settings

if TYPE_CHECKING:
    from meterline.simulator.direct_keys import DirectStretch


#: Calls/s of the planted direct-key calls in gateway mode (straight to the provider).
DIRECT_RATE_PER_S = 500.0


def _range(args: argparse.Namespace) -> tuple[datetime, datetime]:
    if args.month:
        try:
            start = datetime.strptime(args.month, "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            raise SystemExit(f"meterline simulate: --month must be YYYY-MM, not {args.month!r}") from None
        end = (start + timedelta(days=32)).replace(day=1)
        return start, end
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(days=args.days), end


def run(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.ingest import mint_key
    from meterline.simulator.direct_keys import plant_direct_key
    from meterline.simulator.drive import (
        Progress,
        drive_gateway,
        mint_developer_keys,
        produce_envelopes,
        simulator_url,
    )
    from meterline.simulator.organisation import Organisation

    org = Organisation.demo(seed=args.seed, teams=args.teams, timezone=settings.timezone)
    start, end = _range(args)
    envelopes = list(org.envelopes(start, end, volume=args.volume))
    if args.limit:
        envelopes = envelopes[: args.limit]
    provider = simulator_url(settings.demo_upstream, settings.data_dir)
    direct: list[Envelope] = []
    stretch = None
    if provider and not args.no_direct_key:
        envelopes, direct, stretch = plant_direct_key(org, envelopes, start, end)
    if args.mode == "topic" and settings.routing_rules:  # a gateway would have routed them
        envelopes = _routed(settings, envelopes)
    print(f"simulating {len(envelopes):,} calls by {len(org.developers)} developers in "
          f"{len(org.teams)} teams, {start:%Y-%m-%d} to {end:%Y-%m-%d} (seed {args.seed})",
          file=sys.stderr)
    if stretch is not None:
        print(f"planted: {stretch.developer} makes {stretch.calls:,} {stretch.provider} calls "
              f"with a personal key, bypassing the gateway, {stretch.start:%Y-%m-%d %H:%M} to "
              f"{stretch.end:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
    progress = Progress(len(envelopes), args.mode)
    drive_started = datetime.now(UTC)
    if args.mode == "topic":
        result = produce_envelopes(settings.kafka, envelopes, progress=progress)
    else:
        keys_file = Path(settings.keys_file)
        keys = mint_developer_keys(org.developers, lambda developer: mint_key(
            keys_file, user=developer.name, team=developer.team, repo=developer.repos[0],
            name="simulated")[0])
        gateway = args.gateway or f"http://{settings.gateway.host}:{settings.gateway.port}"
        result = drive_gateway(gateway, envelopes, keys, rate_per_s=args.rate, progress=progress)
    progress.close()
    print(f"sent {result.sent:,} ({result.failed:,} failed) in {result.seconds:.1f}s",
          file=sys.stderr)
    status = 0 if args.mode == "gateway" or result.failed == 0 else 1
    if provider and status == 0:
        _serve_at_provider(args.mode, provider, settings, envelopes, direct, stretch)
    if args.report and status == 0:
        days = (start, end) if args.mode == "topic" else (drive_started, datetime.now(UTC))
        status = _report(args, settings, start, end, result.sent - result.failed, days)
    return status


def _routed(settings: Settings, envelopes: list[Envelope]) -> list[Envelope]:
    """The calls as the configured routing rules route them, and a line saying how many."""
    from meterline.simulator.routing import route_envelopes

    routed = list(route_envelopes(settings, envelopes))
    moved = sum(1 for e in routed if e.routing is not None and e.routing.rule)
    watched = sum(1 for e in routed if e.routing is not None and e.routing.shadow_rule)
    print(f"routing rules: {moved:,} calls served by an enforce rule's target, {watched:,} "
          "marked by a shadow rule", file=sys.stderr)
    return routed


def _serve_at_provider(mode: str, provider: str, settings: Settings, envelopes: list[Envelope],
                       direct: list[Envelope], stretch: DirectStretch | None) -> None:
    """The provider's side of the run: what it served (its usage and cost reports).

    In gateway mode the provider served the gateway's calls itself; the planted
    direct calls are sent to it now, with the personal key. In topic mode the
    envelopes never reached it, so it is told what a fleet of gateways had it
    serve (with the key the demo gateway holds: none), and the direct calls.
    """
    from meterline.simulator.direct_keys import served_call
    from meterline.simulator.drive import drive_gateway, tell_provider_served

    key, workspace = (stretch.key, stretch.workspace) if stretch is not None else ("", "")
    if mode == "gateway":
        if direct:
            drive_gateway(provider, direct, {e.key_id: key for e in direct},
                          rate_per_s=DIRECT_RATE_PER_S,
                          extra_headers={"x-sim-workspace": workspace})
        return
    gateway_key = {name: p.api_key.get_secret_value() if p.api_key else ""
                   for name, p in settings.providers.items()}
    calls = [call for envelope in envelopes
             if (call := served_call(envelope, gateway_key.get(envelope.provider, ""))) is not None]
    calls += [call for envelope in direct
              if (call := served_call(envelope, key, workspace)) is not None]
    try:
        recorded = tell_provider_served(provider, calls)
    except OSError as exc:
        print(f"meterline simulate: the simulated provider at {provider} did not take the "
              f"month's usage ({exc}); its reports will not show this run", file=sys.stderr)
        return
    print(f"the simulated provider at {provider} served {recorded:,} of these calls "
          "(its usage and cost reports)", file=sys.stderr)


def _report(args: argparse.Namespace, settings: Settings, start: datetime, end: datetime,
            sent: int, checked: tuple[datetime, datetime]) -> int:
    """Wait until the simulated calls are rows, reconcile, run the chargeback and an alert check.

    What a newcomer opens after the demo: the month's chargeback (HTML, CSV, lead
    summaries, reconciled with the ledger and carrying the provider check in
    its footer) and the budget alerts that the month's spend makes due, shown
    as a dry run (nothing is posted). It ends with the ledger checked against
    the provider's own reports for the ``checked`` days, and the planted
    direct-key spend that check finds.
    """
    from zoneinfo import ZoneInfo

    from meterline.cli.alerts import run_check_command
    from meterline.cli.report import run_chargeback_command

    landed = _wait_for_rows(settings, start, end, sent, timeout_s=args.report_timeout)
    if landed < sent:
        print(f"meterline simulate: only {landed:,} of {sent:,} calls are rows after "
              f"{args.report_timeout:.0f}s; is the pipeline running (meterline up)?",
              file=sys.stderr)
        return 1
    # checked before the chargeback, whose footer carries it; shown last, as the run's verdict
    summary = _reconcile(settings, *checked)
    last = (end - timedelta(seconds=1)).astimezone(ZoneInfo(settings.timezone))
    month = args.month or f"{last:%Y-%m}"
    print(f"\n{sent:,} calls are rows; the chargeback for {month}:", file=sys.stderr)
    status = run_chargeback_command(argparse.Namespace(month=month, output_dir="",
                                                       no_deliver=True), settings)
    print(f"\nbudget alerts due at {end:%Y-%m-%d %H:%M} UTC (dry run, nothing sent):",
          file=sys.stderr)
    alerts = run_check_command(argparse.Namespace(dry_run=True, at=end.isoformat()), settings)
    if summary is None:
        return 1
    from meterline.cli.reconcile import print_reconcile

    print("\nthe ledger against the providers' usage and cost reports, "
          f"{summary['from']} to {summary['to']}:", file=sys.stderr)
    print_reconcile(summary)
    return status or alerts or int(bool(summary["failed"]))


def _reconcile(settings: Settings, first: datetime, last: datetime) -> dict[str, Any] | None:
    """The provider check over the UTC days the run touched; None if it could not run."""
    from meterline.cli.reconcile import run_reconcile
    from meterline.sinks import JobError

    start = first.astimezone(UTC).date()
    end = (last.astimezone(UTC) - timedelta(microseconds=1)).date() + timedelta(days=1)
    try:
        return run_reconcile(settings, {"from": str(start), "to": str(end), "alert": False})
    except JobError as exc:
        print(f"meterline simulate: reconciliation FAILED: {exc}", file=sys.stderr)
        return None


def _wait_for_rows(settings: Settings, start: datetime, end: datetime, expected: int,
                   timeout_s: float) -> int:
    """Poll the store until ``expected`` events of the range are queryable; the count found."""
    import contextlib
    import time

    from meterline.sinks import QueryError, remote_query, store_endpoint

    store = store_endpoint(settings)
    query = ("SELECT count() FROM events WHERE received_at >= {start:DateTime('UTC')} "
             "AND received_at < {end:DateTime('UTC')}")
    bounds = {"start": f"{start.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
              "end": f"{end.astimezone(UTC):%Y-%m-%d %H:%M:%S}"}
    deadline = time.monotonic() + timeout_s
    found = 0
    while True:
        # the store may be starting or busy: then ask again
        with contextlib.suppress(QueryError, OSError, ValueError):
            found = int(remote_query(store.url, query, "TabSeparated", timeout_s=30,
                                     token=store.query_token, parameters=bounds).strip() or 0)
        if found >= expected or time.monotonic() > deadline:
            return found
        print(f"\rwaiting for rows: {found:,} of {expected:,}", end="", file=sys.stderr)
        time.sleep(1.0)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "simulate", help="drive a simulated organisation's traffic into the pipeline",
        description="Volume mode (topic) produces envelopes with historical timestamps straight "
                    "onto the envelopes topic; gateway mode sends real calls through the gateway "
                    "at --rate, with a minted key per simulated developer.")
    parser.add_argument("--mode", choices=("topic", "gateway"), default="topic")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--month", help="simulate this calendar month (YYYY-MM)")
    when.add_argument("--days", type=int, default=30, help="the last N days (default 30)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--teams", type=int, default=3)
    parser.add_argument("--volume", type=float, default=1.0, help="scale the call volume")
    parser.add_argument("--limit", type=int, default=0, help="send at most N calls")
    parser.add_argument("--rate", type=float, default=20.0, help="calls/s in gateway mode")
    parser.add_argument("--gateway", default="", help="gateway URL (default from settings)")
    parser.add_argument("--report", action="store_true",
                        help="when the calls are rows, check the ledger against the provider's "
                             "reports, run the month's chargeback and show the budget alerts "
                             "due (dry run)")
    parser.add_argument("--no-direct-key", action="store_true",
                        help="do not plant the stretch of calls one developer makes with a "
                             "personal key, bypassing the gateway (the reconcile check finds it)")
    parser.add_argument("--report-timeout", type=float, default=600.0,
                        help="seconds to wait for the rows before --report gives up")
    parser.set_defaults(run=run)
