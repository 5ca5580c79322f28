"""``meterline reprice --from … --to …``: recompute past costs with the dated price book.

Parses flags and calls one library function. The re-pricing runs where the
data is owned: this command asks the running store (``POST /jobs/reprice``),
which holds the writer's lock so the sink cannot interleave. When no store
answers, it opens ClickHouse itself (``run_job_directly``); with embedded
chdb that is safe only because no store holds the data, and with a server
DSN it assumes no sink is writing the same hours.

Exit status: 0 done, 1 the job failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from meterline.schemas import Settings


def _reprice(args: argparse.Namespace, settings: Settings) -> int:
    from meterline.services.store_jobs import run_job_directly
    from meterline.sinks import (
        JobArgumentError,
        JobError,
        StoreNotRunning,
        remote_job,
        store_endpoint,
    )

    store = store_endpoint(settings)
    url = args.store or store.url
    job_args = {"from": args.start, "to": args.end}
    try:
        try:
            result = remote_job(url, "reprice", job_args, token=store.operator_token)
            where = f"store at {url}"
        except StoreNotRunning:
            print(f"no store at {url}; re-pricing directly in {settings.clickhouse.dsn}",
                  file=sys.stderr)
            result = run_job_directly(settings, "reprice", job_args)
            where = settings.clickhouse.dsn
    except JobArgumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except JobError as exc:
        print(f"error: re-pricing failed: {exc}", file=sys.stderr)
        return 1
    print(f"re-priced [{result['range_from']}, {result['range_to']}) in {where}: "
          f"{result['events_repriced']} of {result['events_examined']} events changed, "
          f"${result['old_cost_usd']} -> ${result['new_cost_usd']}, "
          f"{result['rollup_delta_rows']} rollup delta rows (run {result['run_id']})",
          file=sys.stderr)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "reprice", help="recompute costs for a past range with the dated price book",
        description="Re-prices every request received in [--from, --to) from its stored usage "
                    "with the configured price overrides and genai-prices, writing new event "
                    "versions and rollup corrections. Safe to re-run. Dates without an offset "
                    "are in the configured timezone.")
    parser.add_argument("--from", dest="start", required=True, help="ISO date or time (inclusive)")
    parser.add_argument("--to", dest="end", required=True, help="ISO date or time (exclusive)")
    parser.add_argument("--store", default="", help="store URL (default from settings)")
    parser.set_defaults(run=_reprice)
