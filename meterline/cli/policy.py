"""``meterline policy report --since …``: what the egress rules blocked or would have blocked.

Read-only, so it never opens embedded data itself: with embedded chdb it asks
the store's read-only query endpoint (``POST /query``, as ``meterline sql``
does), and with a ClickHouse server (``http://`` DSN) it connects with a
read-only client. Dates and times without an offset are in
``Settings.timezone``; ``--since 2026-11-01`` is local midnight.

Exit status: 0 written, 1 the store is not running or refused a query, 2 bad
arguments (an unreadable date, an empty window).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from meterline.schemas import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``policy`` and its subcommands to the CLI."""
    policy = commands.add_parser("policy", help="egress policy").add_subparsers(
        dest="policy_command", required=True)
    report = policy.add_parser(
        "report", help="per rule: calls that would be blocked, refused or excepted; sensitive "
                       "data found; exceptions used and stale")
    report.add_argument("--since", required=True,
                        help="start, YYYY-MM-DD or ISO date-time (local to `timezone` unless "
                             "it has an offset)")
    report.add_argument("--until", default="", help="end, exclusive (default: now)")
    report.add_argument("--format", choices=("markdown", "json", "csv"), default="markdown")
    report.add_argument("--team", default="", help="only this team's calls")
    report.add_argument("--output", default="", help="write here instead of stdout")
    report.set_defaults(run=run_report_command)


def run_report_command(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.reports.policy_report import (
        ReportWindow,
        build_policy_report,
        client_query,
        store_query,
    )
    from meterline.reports.policy_report_render import render
    from meterline.sinks import QueryError, SinkError, connect, store_endpoint
    from meterline.sinks.errors import store_errors

    try:
        window = ReportWindow.parse(args.since, args.until or None, settings.timezone,
                                    now=datetime.now(UTC), team=args.team or None)
    except ValueError as exc:
        print(f"meterline policy report: {exc}", file=sys.stderr)
        return 2
    try:
        if settings.clickhouse.embedded:
            store = store_endpoint(settings)
            query = store_query(store.url, store.query_token)
        else:
            with store_errors(f"connecting to {settings.clickhouse.dsn}"):
                query = client_query(connect(settings.clickhouse, readonly=True))
        report = build_policy_report(query, settings.clickhouse.database, settings.egress, window)
    except (QueryError, SinkError) as exc:
        print(f"meterline policy report: {exc}", file=sys.stderr)
        return 1
    text = render(report, args.format)
    if args.output:
        path = Path(args.output).resolve()
        path.write_text(text, encoding="utf-8")
        print(path, file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
