"""ClickHouse clients from settings: ``chdb://path`` in-process, or an HTTP server.

chdb allows one data path per process, and one process per path: only the
store process may call ``connect`` with a ``chdb://`` DSN. Every other process
reads through the store's query endpoint (``sinks.query_server``).

Every embedded client starts the engine with the store's own configuration
(``engine_config``): no ClickHouse source (file, url, s3, remote, ...) is
granted to anyone in the process.

A ``readonly`` client is the one typed SQL runs on. Its settings are applied
on its own session, in order, limits first and ``readonly=1`` last: once
``readonly=1`` holds, no query can change any setting (``SETTINGS
max_execution_time=0`` is refused), write, create a temporary table, or use a
table function that needs one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect

from meterline.schemas import ClickHouseSettings, StoreSettings

from .engine_config import write_engine_config


def reader_settings(limits: StoreSettings | None, *, embedded: bool) -> dict[str, str]:
    """The read-only session's settings, in the order they must be applied."""
    ordered: dict[str, str] = {}
    if limits is not None:
        ordered.update({
            "max_execution_time": str(limits.max_query_time_s),
            "timeout_overflow_mode": "throw",
            "max_result_rows": str(limits.max_result_rows),
            "max_result_bytes": str(limits.max_result_bytes),
            "result_overflow_mode": "throw",
            "max_query_size": str(limits.max_query_bytes),
        })
    if embedded:
        # chdb's Python() table function reads variables of the calling Python frames
        ordered["allow_python_table_function"] = "0"
    # clickhouse-local turns introspection (addressToLine, demangle ...) on; typed SQL needs none
    ordered["allow_introspection_functions"] = "0"
    ordered["readonly"] = "1"
    return ordered


def writer_settings(*, embedded: bool) -> dict[str, str]:
    """The writing session's settings.

    In-process, inputs are parsed on one thread: ClickHouse's parallel parsing
    (a segmenting thread handing chunks to parser threads) spent ~30 % more CPU
    per row here (13 µs against 9 µs for an event row into a ``Null`` table)
    to cut an insert's wall time, and the embedded engine shares its cores with
    the broker and the worker on the same machine, where that CPU is the
    pipeline's limit. A ClickHouse server has cores of its own: it keeps the
    default.
    """
    return {"input_format_parallel_parsing": "0"} if embedded else {}


def connect(settings: ClickHouseSettings, *, readonly: bool = False,
            database: str | None = None, limits: StoreSettings | None = None) -> Any:
    """A clickhouse-connect client. ``readonly`` clients cannot write or change that.

    ``limits`` (only with ``readonly``) caps each query's time, result rows and
    bytes and text size; past them ClickHouse refuses the query.
    """
    client_settings = (reader_settings(limits, embedded=settings.embedded) if readonly
                       else writer_settings(embedded=settings.embedded))
    if settings.embedded:
        path = Path(settings.dsn.removeprefix("chdb://"))
        path.mkdir(parents=True, exist_ok=True)
        config = write_engine_config(path)
        client = clickhouse_connect.get_client(dsn=f"chdb://{path.resolve()}",
                                               chdb_options={"config-file": str(config)},
                                               settings=client_settings)
    else:
        parsed = urlparse(settings.reader_dsn if readonly and settings.reader_dsn else settings.dsn)
        client = clickhouse_connect.get_client(
            host=parsed.hostname or "localhost", port=parsed.port or 8123,
            username=parsed.username or "default", password=parsed.password or "",
            secure=parsed.scheme == "https", settings=client_settings)
    if database:
        client.database = database
    return client
