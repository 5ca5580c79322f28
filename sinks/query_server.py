"""The read-only query path of the process that owns ClickHouse.

With embedded ClickHouse only the store process may open the data, so
``meterline sql``, reports run elsewhere and the dashboard ask it over HTTP on
loopback: ``POST /query?format=<ClickHouse output format>`` with the SQL as
the body answers with ClickHouse's own rendering of the result. The client it
uses runs with ``readonly=2``: SELECTs and settings only, no writes, no DDL,
and no way to lift that from a query.

Writes go only through named jobs registered by the store (``sinks.jobs``):
``POST /jobs/<name>`` with a JSON object of arguments runs the job in this
process and answers its JSON result. Jobs use the store's own clients and
locks, never the read-only one.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import orjson
from clickhouse_connect.driver.exceptions import ClickHouseError

from .jobs import JobArgumentError, JobRegistry, UnknownJob, encode_result

log = logging.getLogger(__name__)

_FORMAT = re.compile(r"^[A-Za-z]{1,40}$")
MAX_SQL_BYTES = 1 << 20


class QueryError(Exception):
    """The query was refused or failed; the message is ClickHouse's own."""


class QueryServer:
    """A threaded HTTP server answering read-only queries with one client."""

    def __init__(self, client: Any, host: str, port: int,
                 jobs: JobRegistry | None = None) -> None:
        self._client = client
        self.jobs = jobs or JobRegistry()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlparse(self.path).path == "/healthz":
                    self._reply(200, b"ok\n")
                else:
                    self._reply(404, b"not found\n")

            def do_POST(self) -> None:
                url = urlparse(self.path)
                if url.path.startswith("/jobs/"):
                    self._job(unquote(url.path.removeprefix("/jobs/")))
                    return
                if url.path != "/query":
                    self._reply(404, b"not found\n")
                    return
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_SQL_BYTES:
                    self._reply(413, b"query too large\n")
                    return
                fmt = (parse_qs(url.query).get("format") or ["TabSeparatedWithNames"])[0]
                if not _FORMAT.match(fmt):
                    self._reply(400, b"invalid format name\n")
                    return
                sql = self.rfile.read(length).decode("utf-8", errors="replace")
                try:
                    self._reply(200, server.run(sql, fmt))
                except QueryError as exc:
                    self._reply(400, (str(exc) + "\n").encode())

            def _job(self, name: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                try:
                    args = orjson.loads(self.rfile.read(length) or b"{}")
                    if not isinstance(args, dict):
                        raise JobArgumentError("job arguments must be a JSON object")
                    result = server.jobs.run(name, args)
                except UnknownJob as exc:
                    self._reply(404, encode_result({"error": str(exc)}), "application/json")
                except (JobArgumentError, orjson.JSONDecodeError) as exc:
                    self._reply(400, encode_result({"error": str(exc)}), "application/json")
                except Exception as exc:  # reported to the caller and logged
                    log.exception("job %s failed", name)
                    self._reply(500, encode_result({"error": f"{type(exc).__name__}: {exc}"}),
                                "application/json")
                else:
                    self._reply(200, encode_result(result), "application/json")

            def _reply(self, status: int, body: bytes,
                       content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("query server: " + format, *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="query-server",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def run(self, sql: str, fmt: str) -> bytes:
        try:
            data: bytes = self._client.raw_query(sql, fmt=fmt)
        except ClickHouseError as exc:
            raise QueryError(str(exc)) from exc
        return data

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def remote_query(base_url: str, sql: str, fmt: str = "TabSeparatedWithNames",
                 timeout_s: float = 60.0) -> bytes:
    """Run ``sql`` on a store's query endpoint; ``QueryError`` with its message if refused."""
    request = urllib.request.Request(f"{base_url}/query?format={quote(fmt)}",
                                     data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise QueryError(exc.read().decode("utf-8", errors="replace").strip()) from exc
    except urllib.error.URLError as exc:
        raise QueryError(f"the store at {base_url} is not reachable ({exc.reason}); is "
                         "`meterline up` running?") from exc
