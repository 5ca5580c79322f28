"""The authenticated query path of the process that owns ClickHouse.

With embedded ClickHouse only the store process may open the data, so
``meterline sql``, reports run elsewhere and the dashboard ask it over HTTP.
Every call presents a service credential (``Authorization: Bearer <token>``,
``store_access``); without one the answer is ``401`` and the refusal is
logged with its reason and the client's address, never the token.

``POST /query?format=<ClickHouse output format>&param_<name>=<value>...``
(read or operator credential) runs the SQL in the body and answers with
ClickHouse's own rendering of the result. Values go in as bound parameters,
``{name:Type}`` in the SQL and ``param_name`` in the URL, as ClickHouse's HTTP
interface takes them. Each query passes three defences (docs/security.md):

1. the engine grants no ClickHouse source (``engine_config``: no file, url,
   s3, remote, ... for anyone in the process);
2. the client's session is ``readonly=1`` with time and result limits that no
   query can lift (``client.connect``);
3. the parser gate (``sql_guard``): one read statement, allowed table
   functions only, no ``INTO OUTFILE``, no scalar ``file()``.

Answers: ``200`` result; ``400`` ClickHouse refused the SQL (its message);
``403`` the gate refused it; ``413`` query text over ``store.max_query_bytes``;
``422`` a limit was hit (time, rows, bytes), with the setting to change.

``POST /ledger/admit`` and ``/ledger/settle`` (read or operator credential)
are the enforcement ledger's (``governance.ledger_wire``): gateways ask them
on every call under a limit or a blocking budget, over kept-alive connections
(HTTP/1.1; a refusal closes its connection).

``POST /jobs/<name>`` (operator credential only; the read credential gets
``403``) runs a named store job (``sinks.jobs``) with a JSON object of
arguments and answers its JSON result. ``GET /healthz`` is open and answers
``ok`` only: no data.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlparse

import orjson
from clickhouse_connect.driver.exceptions import ClickHouseError

from meterline.governance.ledger_wire import ADMIT_PATH, SETTLE_PATH
from meterline.schemas.store_auth import StoreRole

if TYPE_CHECKING:  # the ledger reads spend through reports, which import this package
    from meterline.governance.ledger import Ledger

from .jobs import JobArgumentError, JobRegistry, UnknownJob, encode_result
from .sql_guard import SqlRefused, checked_sql
from .store_access import StoreAccess
from .store_client import QueryError

log = logging.getLogger(__name__)

_FORMAT = re.compile(r"^[A-Za-z]{1,40}$")
_PARAM = re.compile(r"^param_([A-Za-z_][A-Za-z0-9_]{0,63})$")
MAX_SQL_BYTES = 256 * 1024
MAX_JOB_ARGS_BYTES = 1 << 20
#: A request (headers and body) must arrive within this time: a slow client holds one thread.
REQUEST_TIMEOUT_S = 30.0
#: ClickHouse error codes for the read-only session's limits, and what to change.
_LIMITS = {159: "the query ran longer than store.max_query_time_s",
           396: "the result is larger than store.max_result_rows / store.max_result_bytes"}


class LimitExceeded(QueryError):
    """A query hit one of the read-only session's limits."""


class _Server(ThreadingHTTPServer):
    #: The listen backlog. The standard library's 5 drops connections when every gateway
    #: instance opens its pool to the ledger at once (64 callers: SYN retried after 1 s).
    request_queue_size = 256


class QueryServer:
    """A threaded HTTP server answering authenticated queries and jobs.

    ``client`` is the read-only client (``connect(readonly=True, limits=...)``).
    Queries on it run one at a time (``_lock``), gate and query together, and
    after any failure the client is drained before the next caller's query:

    chdb hands what a failed query had already streamed to the *next* query
    on the same client, prepended to that query's own result. Measured: after
    a ``max_result_bytes`` refusal, ``SELECT 42`` answered 100,002 bytes of
    the refused result followed by ``42``. Without the drain, one caller's
    over-limit result would be served as the next caller's answer.
    ``_drain`` runs ``SELECT <random sentinel>`` until the answer is exactly
    the sentinel; until it is, every query is refused.
    """

    def __init__(self, client: Any, host: str, port: int, *, access: StoreAccess,
                 jobs: JobRegistry | None = None, max_sql_bytes: int = MAX_SQL_BYTES,
                 ledger: Ledger | None = None) -> None:
        self._client = client
        self.ledger = ledger
        self._lock = threading.Lock()
        self._dirty = False
        self.jobs = jobs or JobRegistry()
        self.access = access
        self.max_sql_bytes = max_sql_bytes
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S
            protocol_version = "HTTP/1.1"
            # The reply's headers and body are two writes: with Nagle on, the body waits for
            # the client's delayed ACK of the headers (measured: a ledger call took 8 ms).
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                if urlparse(self.path).path == "/healthz":
                    self._reply(200, b"ok\n")
                else:
                    self._reply(404, b"not found\n")

            def do_POST(self) -> None:
                url = urlparse(self.path)
                is_job = url.path.startswith("/jobs/")
                is_ledger = url.path in (ADMIT_PATH, SETTLE_PATH) and server.ledger is not None
                if not is_job and not is_ledger and url.path != "/query":
                    self._reply(404, b"not found\n")
                    return
                role = self._authenticate(url.path)
                if role is None:
                    return
                if is_job:
                    if role != "operator":
                        self._refuse(403, url.path, "the read credential may not run jobs; "
                                     "jobs need the operator credential")
                        return
                    self._job(unquote(url.path.removeprefix("/jobs/")))
                elif is_ledger:
                    self._ledger(url.path)
                else:
                    self._query(url.query)

            def _authenticate(self, path: str) -> StoreRole | None:
                header = self.headers.get("authorization")
                role = server.access.role_of(header)
                if role is None:
                    reason = "no credential" if not header else "wrong credential"
                    self._refuse(401, path, f"{reason}: send Authorization: Bearer <store token> "
                                 "(docs/security.md)")
                return role

            def _refuse(self, status: int, path: str, reason: str) -> None:
                log.warning("store endpoint refused POST %s from %s: %s", path,
                            self.client_address[0], reason)
                self._reply(status, encode_result({"error": reason}), "application/json")

            def _length(self, limit: int) -> int | None:
                try:
                    length = int(self.headers.get("content-length") or 0)
                except ValueError:
                    length = -1
                if length < 0:
                    self._reply(400, b"invalid content-length\n")
                    return None
                if length > limit:
                    self._reply(413, f"query too large: {length} bytes, the limit is {limit} "
                                "(store.max_query_bytes)\n".encode())
                    return None
                return length

            def _query(self, query_string: str) -> None:
                length = self._length(server.max_sql_bytes)
                if length is None:
                    return
                fmt, parameters = "TabSeparatedWithNames", {}
                for name, value in parse_qsl(query_string, keep_blank_values=True):
                    if name == "format":
                        fmt = value
                    elif match := _PARAM.match(name):
                        parameters[match.group(1)] = value
                    else:
                        self._reply(400, f"unknown query argument {name!r}\n".encode())
                        return
                if not _FORMAT.match(fmt):
                    self._reply(400, b"invalid format name\n")
                    return
                sql = self.rfile.read(length).decode("utf-8", errors="replace")
                try:
                    self._reply(200, server.run(sql, fmt, parameters))
                except SqlRefused as exc:
                    self._refuse(403, "/query", str(exc))
                except LimitExceeded as exc:
                    self._reply(422, (str(exc) + "\n").encode())
                except QueryError as exc:
                    self._reply(400, (str(exc) + "\n").encode())

            def _job(self, name: str) -> None:
                length = self._length(MAX_JOB_ARGS_BYTES)
                if length is None:
                    return
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

            def _ledger(self, path: str) -> None:
                length = self._length(MAX_JOB_ARGS_BYTES)
                if length is None:
                    return
                assert server.ledger is not None
                from meterline.governance.ledger import serve as serve_ledger  # cycle: see top

                try:
                    answer = serve_ledger(server.ledger, path, self.rfile.read(length))
                except (ValueError, KeyError, TypeError) as exc:
                    self._reply(400, encode_result({"error": f"malformed ledger request: {exc}"}),
                                "application/json")
                    return
                self._reply(200, answer, "application/json")

            def _reply(self, status: int, body: bytes,
                       content_type: str = "text/plain; charset=utf-8") -> None:
                if status >= 400:  # the body may be unread: this connection cannot be reused
                    self.close_connection = True
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("query server: " + format, *args)

        self._httpd = _Server((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="query-server",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def run(self, sql: str, fmt: str, parameters: dict[str, str] | None = None) -> bytes:
        """The result of ``sql`` rendered as ``fmt``: ``SqlRefused``, ``QueryError``."""
        with self._lock:
            if self._dirty and not self._drain():
                raise QueryError("the store's reader could not be reset after a failed query; "
                                 "try again")
            try:
                statement = checked_sql(self._client, sql, parameters)
                data: bytes = self._client.raw_query(statement, parameters=parameters or {},
                                                     fmt=fmt)
                return data
            except ClickHouseError as exc:
                self._dirty = True
                self._drain()
                message = str(exc)
                for code, why in _LIMITS.items():
                    if f"Code: {code}." in message:
                        raise LimitExceeded(f"refused: {why}. ClickHouse said: {message}") from exc
                raise QueryError(message) from exc

    def _drain(self, attempts: int = 3) -> bool:
        """Read out what a failed query left on the client (see the class docstring).

        True once a sentinel query answers exactly its sentinel: the client is clean.
        """
        sentinel = secrets.token_hex(16)
        for _ in range(attempts):
            try:
                answer = self._client.raw_query("SELECT {sentinel:String}",
                                                parameters={"sentinel": sentinel},
                                                fmt="TabSeparated")
            except ClickHouseError as exc:
                log.warning("draining the store's reader failed: %s", exc)
                continue
            if answer == f"{sentinel}\n".encode():
                self._dirty = False
                return True
        log.error("the store's reader still returns a failed query's leftovers after %d "
                  "drains; queries are refused until it is clean", attempts)
        return False

    def start(self) -> None:
        self._thread.start()

    def serving(self) -> bool:
        """True while the server thread runs (the store exits when it does not)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
