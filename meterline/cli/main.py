"""``meterline``: one command for every role.

Each subcommand parses its flags, loads ``Settings`` once, and calls one
library function. Configuration errors are printed with file, line and field,
and exit with status 2 before anything starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from meterline.cli.keys import add_parsers as add_keys_parsers
from meterline.schemas import ConfigError, Settings, default_config_path, load_settings

Command = Callable[[argparse.Namespace, Settings], int]


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.services import run_up

    return run_up(settings, args.config)


def _gateway(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.services import run_gateway

    return run_gateway(settings, workers=args.workers)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.services import run_worker

    run_worker(settings)
    return 0


def _detector(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.services import run_detector

    run_detector(settings)
    return 0


def _store(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.reports import AlertConfigError
    from meterline.services import run_store

    try:
        run_store(settings)
    except AlertConfigError as exc:
        print(f"meterline store: {exc}", file=sys.stderr)
        return 2
    return 0


def _init(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.services.init import run_init

    return run_init(settings)


def _simulator(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.services import run_simulator

    run_simulator(args.host, args.port)
    return 0


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.sinks import QueryError, remote_query, store_endpoint

    store = store_endpoint(settings)
    url = args.store or store.url
    try:
        params = dict(param.partition("=")[::2] for param in args.param)
        sys.stdout.write(remote_query(url, args.query, args.format, token=store.query_token,
                                      parameters=params).decode())
    except QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterline", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=default_config_path(),
                        help="configuration file (default: $METERLINE_CONFIG or meterline.yaml)")
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("up", help="run the whole pipeline on this machine").set_defaults(run=_up)
    commands.add_parser("init", help="create topics and apply ClickHouse migrations (scale-out)"
                        ).set_defaults(run=_init)
    gateway = commands.add_parser("gateway", help="run the gateway")
    gateway.add_argument("--workers", type=int, default=None, metavar="N",
                         help="processes serving the gateway's port (SO_REUSEPORT), each with "
                              "its own spool under gateway.spool_dir (default: gateway.workers)")
    gateway.set_defaults(run=_gateway)
    commands.add_parser("worker", help="run the enrichment processors").set_defaults(run=_worker)
    commands.add_parser("detector", help="run the anomaly detectors").set_defaults(run=_detector)
    commands.add_parser("store", help="own ClickHouse: sink, queries, reports"
                        ).set_defaults(run=_store)
    simulator = commands.add_parser("simulator", help="run the simulated provider")
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8090)
    simulator.set_defaults(run=_simulator)

    add_keys_parsers(commands)

    sql = commands.add_parser("sql", help="run a read-only query against the store")
    sql.add_argument("query")
    sql.add_argument("--format", default="PrettyCompactMonoBlock",
                     help="ClickHouse output format (CSVWithNames, JSONEachRow, ...)")
    sql.add_argument("--store", default="", help="store query URL (default from settings)")
    sql.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="bind a value to {NAME:Type} in the query (repeatable)")
    sql.set_defaults(run=_sql)
    from meterline.cli import simulate

    simulate.register(commands)
    from meterline.cli import reprice

    reprice.register(commands)
    from meterline.cli import report

    report.register(commands)
    from meterline.cli import alerts

    alerts.register(commands)
    from meterline.cli import policy

    policy.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"meterline: {exc}", file=sys.stderr)
        return 2
    run: Command = args.run
    return run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
