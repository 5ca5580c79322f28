"""A real HTTP server on loopback standing in for Slack's incoming-webhook endpoint.

It records every JSON payload it accepts (``payloads``) and every request it
saw (``requests``). ``fail_next(status, times, retry_after)`` makes the next
``times`` requests answer ``status`` (500, 429 with ``Retry-After``, 404 ...)
before it goes back to answering ``200 ok`` as Slack does. ``down()`` closes
the port, so connections are refused, until ``up()``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SlackStub:
    """Slack's webhook endpoint on ``url``; thread-safe records of what arrived."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.requests: list[int] = []
        self._script: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/services/T000/B000/stub"

    def fail_next(self, status: int, times: int = 1, retry_after: str = "") -> None:
        with self._lock:
            self._script.extend([(status, retry_after)] * times)

    def up(self) -> SlackStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with stub._lock:
                    status, retry_after = stub._script.pop(0) if stub._script else (200, "")
                    stub.requests.append(status)
                    if status == 200:
                        stub.payloads.append(json.loads(body))
                reply = b"ok" if status == 200 else b"rate_limited" if status == 429 else b"error"
                self.send_response(status)
                if retry_after:
                    self.send_header("Retry-After", retry_after)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Close the port: connections are refused until ``up()`` (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def headers_of(self, index: int) -> str:
        """The header text of payload ``index`` (Block Kit's first block)."""
        header: str = self.payloads[index]["blocks"][0]["text"]["text"]
        return header


def running_stub() -> Iterator[SlackStub]:
    stub = SlackStub().up()
    yield stub
    stub.down()
