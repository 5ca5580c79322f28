"""ClickHouse clients from settings: ``chdb://path`` in-process, or an HTTP server.

chdb allows one data path per process, and one process per path: only the
store process may call ``connect`` with a ``chdb://`` DSN. Every other process
reads through the store's query endpoint (``sinks.query_server``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect

from meterline.schemas import ClickHouseSettings


def connect(settings: ClickHouseSettings, *, readonly: bool = False,
            database: str | None = None) -> Any:
    """A clickhouse-connect client. ``readonly`` clients cannot write or change that."""
    client_settings = {"readonly": "2"} if readonly else {}
    if settings.embedded:
        path = Path(settings.dsn.removeprefix("chdb://"))
        path.mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(dsn=f"chdb://{path.resolve()}",
                                               settings=client_settings)
    else:
        parsed = urlparse(settings.dsn)
        client = clickhouse_connect.get_client(
            host=parsed.hostname or "localhost", port=parsed.port or 8123,
            username=parsed.username or "default", password=parsed.password or "",
            secure=parsed.scheme == "https", settings=client_settings)
    if database:
        client.database = database
    return client
