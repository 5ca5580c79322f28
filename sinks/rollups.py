"""Rollups that stay equal to the events they summarise, by construction and by repair.

The rollup is ``spend_hourly`` (SummingMergeTree). Two paths write it:

- the materialized view ``spend_hourly_mv``, which adds each *first* pricing
  (``version = 1``) as the sink inserts it. The sink inserts only request ids
  not yet stored (``EventWriter``), so on the normal path each id is added once;
- ``repair_rollups``, which writes *delta rows*: for every rollup key in a time
  range, (aggregate over the distinct events) - (what the rollup holds). It
  is how re-pricing moves cost between versions, and how the store heals the
  one gap the view leaves: ClickHouse commits the events part and the view's
  part separately, so a crash between the two (or a duplicate insert by
  hand) leaves the rollup short (or long) by exactly that insert.

Guarantees of ``repair_rollups`` for the range it is given:

1. afterwards Σ rollup = Σ over ``events FINAL`` (latest version of each
   request id) for every key and every summed column, exactly (integers and
   Decimal(38, 12));
2. it is idempotent: a second run finds every delta zero and writes nothing;
3. the deltas go in as one ``INSERT … SELECT``, so one part: a crash leaves
   the rollup either untouched or repaired, and a re-run finishes the job.

It must not run while the sink inserts into the same hours: the query reads
``events`` and ``spend_hourly`` at slightly different moments, and an insert
in between would be counted as a delta and then again by the view. Callers
hold the writer's lock (``EventWriter.lock``), which every sink insert takes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import store_errors

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rollup:
    """A rollup table: its time bucket, key columns and summed columns, as SQL on ``events``."""

    table: str
    bucket: tuple[str, str]
    keys: tuple[tuple[str, str], ...]
    sums: tuple[tuple[str, str], ...]

    @property
    def key_columns(self) -> list[str]:
        return [self.bucket[0], *(name for name, _ in self.keys)]


SPEND_HOURLY = Rollup(
    table="spend_hourly",
    bucket=("hour", "toStartOfHour(received_at)"),
    keys=(("team", "team"), ("cost_centre", "cost_centre"), ("user", "user"),
          ("key_id", "key_id"), ("repo", "repo"), ("tool", "tool"), ("provider", "provider"),
          ("model", "served_model"), ("unpriced", "unpriced"), ("attributed", "attributed")),
    sums=(("requests", "count()"), ("errors", "countIf(status >= 400)"),
          ("input_tokens", "sum(input_tokens)"), ("output_tokens", "sum(output_tokens)"),
          ("cache_read_tokens", "sum(cache_read_tokens)"),
          ("cache_write_tokens", "sum(cache_write_5m_tokens + cache_write_1h_tokens)"),
          ("reasoning_tokens", "sum(reasoning_tokens)"), ("cost_usd", "sum(cost_usd)")),
)

#: Every rollup reports read; reconciliation and repair cover each of them.
ROLLUPS: tuple[Rollup, ...] = (SPEND_HOURLY,)


def hour_floor(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_floor(moment)
    return floor if floor == moment.astimezone(UTC) else floor + timedelta(hours=1)


#: The bound ends of a [start, end) range in SQL; ``range_params`` holds their values.
START = "{start:DateTime64(6, 'UTC')}"
END = "{end:DateTime64(6, 'UTC')}"


def time_param(moment: datetime) -> str:
    """``moment`` as the text a ``DateTime64(6, 'UTC')`` query parameter reads."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"


def range_params(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": time_param(start), "end": time_param(end)}


def delta_sql(rollup: Rollup, database: str) -> str:
    """The SELECT of ``rollup``'s delta rows for [start, end) (``range_params``) minus held."""
    bucket, bucket_expr = rollup.bucket
    keys = rollup.key_columns
    key_list = ", ".join(keys)
    truth = ", ".join([f"{bucket_expr} AS {bucket}", *(f"{expr} AS {name}"
                                                       for name, expr in rollup.keys),
                       *(f"{expr} AS {name}" for name, expr in rollup.sums)])
    held = ", ".join([*keys, *(f"sum({name}) AS {name}" for name, _ in rollup.sums)])
    deltas = ", ".join(f"e.{name} - r.{name} AS {name}" for name, _ in rollup.sums)
    differs = " OR ".join(f"e.{name} != r.{name}" for name, _ in rollup.sums)
    return (
        f"SELECT {key_list}, {deltas} FROM "
        f"(SELECT {truth} FROM {database}.events FINAL "
        f"WHERE received_at >= {START} AND received_at < {END} "
        f"GROUP BY {key_list}) AS e "
        f"FULL OUTER JOIN "
        f"(SELECT {held} FROM {database}.{rollup.table} "
        f"WHERE {bucket} >= {START} AND {bucket} < {END} "
        f"GROUP BY {key_list}) AS r USING ({key_list}) "
        f"WHERE {differs} "
        "SETTINGS join_use_nulls = 0"
    )


def repair_rollups(client: Any, database: str, start: datetime, end: datetime) -> int:
    """Make every rollup equal the distinct events in [start, end), widened to whole hours.

    Returns the number of delta rows written (0 when the rollups were right).
    The caller holds the writer's lock (see the module docstring): the count
    and the insert below must see the same tables.
    """
    start, end = hour_floor(start), hour_ceil(end)
    written = 0
    for rollup in ROLLUPS:
        select, bound = delta_sql(rollup, database), range_params(start, end)
        columns = ", ".join([*rollup.key_columns, *(name for name, _ in rollup.sums)])
        with store_errors(f"repairing {rollup.table} for [{start}, {end})"):
            rows = int(client.query(f"SELECT count() FROM ({select})",
                                    parameters=bound).result_rows[0][0])
            if rows:
                client.command(f"INSERT INTO {database}.{rollup.table} ({columns}) {select}",
                               parameters=bound)
        if rows:
            log.warning("%s: wrote %d delta rows for [%s, %s)", rollup.table, rows, start, end)
        written += rows
    return written


def repair_recent(client: Any, database: str, lookback_s: float = 600.0) -> int:
    """Repair the hours touched by the last ``lookback_s`` seconds of inserts; at start-up.

    The inserts that can have left a gap (see the module docstring) are the
    last ones before a crash: rows whose ``inserted_at`` is within
    ``lookback_s`` of the newest row. Their hours are repaired; returns the
    number of delta rows written.
    """
    with store_errors("finding recently inserted hours"):
        result = client.query(
            f"SELECT min(received_at), max(received_at), count() FROM {database}.events "
            f"WHERE inserted_at >= (SELECT max(inserted_at) FROM {database}.events) "
            "- toIntervalMillisecond({lookback_ms:UInt64})",
            parameters={"lookback_ms": int(lookback_s * 1000)})
    first, last, count = result.result_rows[0]
    if not count:
        return 0
    return repair_rollups(client, database, first, last + timedelta(microseconds=1))
