"""Re-pricing a past range of stored events without double counting.

``reprice_range(client, db, start, end, repricer, lock=…)`` recomputes the
cost of every request received in [start, end) from the usage stored on its
latest event version, with the pricing function it is given (the store wires
in ``processors.reprice_row`` with the configured, dated price book; this
module knows ClickHouse, not prices). Per day of the range, in order:

1. read the latest version of each request (``events FINAL``) and reprice it
   in Python; a request whose price is unchanged yields nothing;
2. under the writer's lock, insert the changed rows as version + 1 (the
   ReplacingMergeTree keeps the highest version; the rollup view ignores
   versions above 1);
3. still under the lock, repair the rollups for that day's hours
   (``rollups.repair_rollups``): delta rows bring each rollup key from the old
   cost to the new one.

Guarantees: after a run, Σ rollup = Σ latest-version event cost for the
range, and each request id is counted once. A run is idempotent: re-running
it with the same book finds no changed prices and zero deltas. A crash
anywhere leaves a state the next run completes: rows inserted in step 2
without their step 3 are repaired by that run's step 3 (or by the store's
start-up repair, since they are recent inserts). Each run is recorded in
``reprice_runs`` (running, then done or failed).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from .errors import store_errors
from .rollups import END, START, hour_ceil, hour_floor, range_params, repair_rollups

log = logging.getLogger(__name__)

RowRepricer = Callable[[Mapping[str, Any]], "dict[str, Any] | None"]

_READ_SETTINGS = {"output_format_json_quote_decimals": 1,
                  "output_format_json_quote_64bit_integers": 0}
_INSERT_SETTINGS = {"date_time_input_format": "best_effort",
                    "input_format_skip_unknown_fields": 0}


@dataclass(frozen=True, slots=True)
class RepriceResult:
    run_id: str
    range_from: datetime
    range_to: datetime
    events_examined: int
    events_repriced: int
    old_cost_usd: Decimal
    new_cost_usd: Decimal
    rollup_delta_rows: int

    def as_dict(self) -> dict[str, Any]:
        return {name: (value.isoformat() if isinstance(value, datetime) else
                       format(value, "f") if isinstance(value, Decimal) else value)
                for name, value in asdict(self).items()}


def _decimal_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _days(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    windows = []
    cursor = start
    while cursor < end:
        nxt = min(end, (cursor + timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                             microsecond=0))
        windows.append((cursor, nxt))
        cursor = nxt
    return windows


def _clamp(client: Any, database: str, start: datetime, end: datetime
           ) -> tuple[datetime, datetime]:
    """[start, end) narrowed to whole hours around the events it holds (empty if none)."""
    with store_errors("finding the events in range"):
        first, last, count = client.query(
            f"SELECT min(received_at), max(received_at), count() FROM {database}.events "
            f"WHERE received_at >= {START} AND received_at < {END}",
            parameters=range_params(start, end)).result_rows[0]
    if not count:
        return start, start
    return max(start, hour_floor(first)), min(end, hour_ceil(last + timedelta(microseconds=1)))


def _record(client: Any, database: str, row: dict[str, Any]) -> None:
    with store_errors("recording re-pricing run"):
        client.raw_insert(f"{database}.reprice_runs",
                          insert_block=orjson.dumps(row, default=_decimal_text),
                          fmt="JSONEachRow", settings=_INSERT_SETTINGS)


def reprice_range(client: Any, database: str, start: datetime, end: datetime,
                  repricer: RowRepricer, *, lock: threading.RLock,
                  price_book_sha256: str = "") -> RepriceResult:
    """Reprice [start, end) (widened to whole hours); see the module docstring."""
    start, end = hour_floor(start), hour_ceil(end)
    if end <= start:
        raise ValueError(f"empty range [{start}, {end})")
    run_id = str(uuid.uuid4())
    started_at = datetime.now(UTC)
    base = {"run_id": run_id, "range_from": start, "range_to": end, "started_at": started_at,
            "price_book_sha256": price_book_sha256}
    _record(client, database, {**base, "version": 1, "state": "running"})
    examined = repriced = delta_rows = 0
    old_cost = new_cost = Decimal(0)
    try:
        for day_start, day_end in _days(*_clamp(client, database, start, end)):
            with store_errors(f"reading events [{day_start}, {day_end})"):
                raw = client.raw_query(
                    f"SELECT * FROM {database}.events FINAL WHERE received_at >= "
                    f"{START} AND received_at < {END} FORMAT JSONEachRow",
                    parameters=range_params(day_start, day_end), settings=_READ_SETTINGS)
            changed = []
            for line in raw.splitlines():
                row = orjson.loads(line)
                examined += 1
                new = repricer(row)
                if new is not None:
                    changed.append(new)
                    old_cost += Decimal(str(row["cost_usd"]))
                    new_cost += Decimal(str(new["cost_usd"]))
            with lock:
                if changed:
                    with store_errors(f"inserting {len(changed)} re-priced events"):
                        client.raw_insert(
                            f"{database}.events",
                            insert_block=b"\n".join(orjson.dumps(row, default=_decimal_text)
                                                    for row in changed),
                            fmt="JSONEachRow", settings=_INSERT_SETTINGS)
                delta_rows += repair_rollups(client, database, day_start, day_end)
            repriced += len(changed)
            log.info("re-priced %d of the events in [%s, %s)", len(changed), day_start, day_end)
    except Exception as exc:
        _record(client, database, {**base, "version": 2, "state": "failed",
                                   "finished_at": datetime.now(UTC),
                                   "events_examined": examined, "events_repriced": repriced,
                                   "error": f"{type(exc).__name__}: {exc}"})
        raise
    result = RepriceResult(run_id, start, end, examined, repriced, old_cost, new_cost, delta_rows)
    _record(client, database, {**base, "version": 2, "state": "done",
                               "finished_at": datetime.now(UTC), "events_examined": examined,
                               "events_repriced": repriced, "old_cost_usd": old_cost,
                               "new_cost_usd": new_cost, "rollup_delta_rows": delta_rows})
    return result
