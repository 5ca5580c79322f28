"""Fixtures for the security suite: the real store endpoint on the real engine.

``store`` is a ``QueryServer`` exactly as ``run_store`` builds it: a read-only
client on the session's chdb engine (``connect(readonly=True, limits=...)``,
the engine started with ``engine_config``), the test credentials, one job. It
reads a per-test database built by the real migrations (``clickhouse``).
Small limits make the limit cases fast. ``ssrf_probe`` is an HTTP server on
loopback that counts every request: a query that reached it is a leak.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from meterline.schemas import ClickHouseSettings, StoreSettings
from meterline.sinks import JobRegistry, QueryServer, connect
from tests.harness import store_access

#: Written to a file the store process can read; no answer may ever contain it.
CANARY = "canary-9f3b2c-file-content-must-never-leave"
LIMITS = StoreSettings(max_query_time_s=1, max_result_rows=1000, max_result_bytes=64 * 1024,
                       max_query_bytes=4096)


@dataclass
class Store:
    url: str
    server: QueryServer
    reader: Any
    database: str
    canary_file: Path
    jobs_run: list[Mapping[str, Any]] = field(default_factory=list)


@pytest.fixture
def store(clickhouse: tuple[Any, str], chdb_settings: ClickHouseSettings,
          tmp_path: Path) -> Iterator[Store]:
    _, database = clickhouse
    canary_file = tmp_path / "canary.txt"
    canary_file.write_text(CANARY + "\n")
    reader = connect(chdb_settings, readonly=True, database=database, limits=LIMITS)
    jobs = JobRegistry()
    ran: list[Mapping[str, Any]] = []

    def echo(args: Mapping[str, Any]) -> Mapping[str, Any]:
        ran.append(args)
        return {"ran": True}

    jobs.register("echo", echo)
    server = QueryServer(reader, "127.0.0.1", 0, access=store_access(), jobs=jobs,
                         max_sql_bytes=LIMITS.max_query_bytes)
    server.start()
    yield Store(server.url, server, reader, database, canary_file, ran)
    server.stop()
    reader.close()


class _Probe(BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = b"probe-answer\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Probe:
    url: str
    hits: list[str]


@pytest.fixture
def ssrf_probe() -> Iterator[Probe]:
    hits: list[str] = []
    handler = type("Handler", (_Probe,), {"hits": hits})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Probe(f"http://127.0.0.1:{httpd.server_address[1]}", hits)
    httpd.shutdown()
    httpd.server_close()
