"""Several gateway processes on one port: ``meterline gateway --workers N``.

``serve_workers`` is the parent. It forks N children and supervises them:

- Child ``i`` binds a socket of its own to ``gateway.host:port`` with
  SO_REUSEPORT and serves uvicorn on it; the kernel spreads new connections
  across the children's sockets. It spools to ``<gateway.spool_dir>/worker-<i>``
  (``spool_dirs``), whose ``LOCK`` (``ingest.spool``) keeps every other process
  off that directory. ``/healthz``, ``/readyz`` and ``/metrics`` answer for the
  child that accepted the connection.
- A child that dies is started again with the same index after a back-off
  (0.5 s, doubling up to 8 s), so it recovers its own spool and replays what it
  had not seen stored. One that exits with status 2 (its configuration is
  unusable: its spool is in use) stops the gateway with status 2; one that dies
  ``MAX_QUICK_EXITS`` times in a row, each time within ``STABLE_AFTER_S`` of its
  start, stops it with status 1. The parent stops the other children first.
- SIGTERM or SIGINT to the parent (``stop``): SIGTERM to every child, which
  then finishes its calls and flushes and fsyncs its envelopes (uvicorn's
  graceful shutdown, then the emitter's); SIGKILL for one still running after
  ``STOP_TIMEOUT_S``. A child dies with its parent (``PR_SET_PDEATHSIG``), as
  the roles of ``meterline up`` do, so a SIGKILLed parent leaves none behind.

Before anything starts, ``check_start`` refuses a worker count that would
leave a spool with envelopes in it unread (one from before the count changed),
and, for several workers, port 0 and a port something already serves: a
socket bound without SO_REUSEPORT shows that, where the children's would share it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from meterline.embedded.supervisor import _die_with_parent
from meterline.ingest import create_app
from meterline.ingest.app import GatewayApp
from meterline.ingest.segment import SUFFIX
from meterline.ingest.spool import SpoolLocked
from meterline.schemas import Settings

log = logging.getLogger(__name__)

#: Exit status of a gateway whose configuration is unusable (as ``meterline.cli.main``).
CONFIG_ERROR_EXIT = 2
#: How every gateway process runs uvicorn, one or several.
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop", "http": "httptools", "log_level": "warning", "access_log": False,
    "timeout_graceful_shutdown": 10}
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
#: A child that ran this long before it died was serving: its back-off starts over.
STABLE_AFTER_S = 30.0
MAX_QUICK_EXITS = 5
#: Uvicorn's graceful shutdown (10 s) and the emitter's flush (10 s), with room to spare.
STOP_TIMEOUT_S = 30.0
POLL_S = 0.2


class GatewayStartError(Exception):
    """The gateway cannot start with this configuration; the message says why."""


def spool_dirs(spool_dir: Path, workers: int) -> list[Path]:
    """The spool of each gateway process: ``spool_dir`` itself for one, else one per child."""
    return [spool_dir] if workers == 1 else [spool_dir / f"worker-{i}" for i in range(workers)]


def _stranded_spools(spool_dir: Path, workers: int) -> list[Path]:
    """Spools holding segments that no process of this worker count would read."""
    owned = set(spool_dirs(spool_dir, workers))
    candidates = [spool_dir, *sorted(spool_dir.glob("worker-*"))]
    return [path for path in candidates
            if path not in owned and any(path.glob(f"*{SUFFIX}"))]


def _port_in_use(host: str, port: int) -> OSError | None:
    """Why a plain socket (no SO_REUSEPORT) cannot bind ``host:port``; None if it can."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no user
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None


def check_start(settings: Settings, workers: int) -> None:
    """``GatewayStartError`` if ``workers`` processes cannot start here (see the module doc)."""
    if workers < 1:
        raise GatewayStartError(f"--workers must be at least 1, not {workers}")
    gateway = settings.gateway
    stranded = _stranded_spools(Path(gateway.spool_dir), workers)
    if stranded:
        raise GatewayStartError(
            f"{', '.join(map(str, stranded))} hold envelopes that a gateway with "
            f"{workers} worker(s) would never replay: run the worker count that wrote them "
            f"until they hold no {SUFFIX} files, then change it")
    if workers == 1:
        return
    if gateway.port == 0:
        raise GatewayStartError("several gateway workers need a fixed gateway.port, not 0")
    refused = _port_in_use(gateway.host, gateway.port)
    if refused is not None:
        raise GatewayStartError(f"port {gateway.host}:{gateway.port} is in use: {refused}")


def open_app(settings: Settings) -> GatewayApp:
    """``create_app``, a spool held by another process reported as ``GatewayStartError``."""
    try:
        return create_app(settings)
    except SpoolLocked as exc:
        raise GatewayStartError(
            f"{exc}: every gateway process needs a spool of its own (is another "
            "`meterline gateway` running with this gateway.spool_dir?)") from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_child(settings: Settings, spool: Path, parent: int) -> None:
    """One child: its own spool, its own socket; exits with status 2 if its spool is in use."""
    import uvicorn

    for sig in (signal.SIGINT, signal.SIGTERM):  # the parent's handlers, until uvicorn's
        signal.signal(sig, signal.SIG_DFL)
    _die_with_parent()
    if os.getppid() != parent:  # it died before the line above
        sys.exit(0)
    child = settings.model_copy(update={
        "gateway": settings.gateway.model_copy(update={"spool_dir": str(spool)})})
    try:
        app = open_app(child)
    except GatewayStartError as exc:
        print(f"meterline gateway: {exc}", file=sys.stderr, flush=True)
        sys.exit(CONFIG_ERROR_EXIT)
    host, port = settings.gateway.host, settings.gateway.port
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **UVICORN_OPTIONS))
    server.run(sockets=[_reuseport_socket(host, port)])


def _exit_text(code: int | None) -> str:
    return f"signal {-code}" if code is not None and code < 0 else f"status {code}"


@dataclass
class _Child:
    """One child slot: its index and spool stay, its process changes with each restart."""

    index: int
    spool: Path
    process: BaseProcess | None = None
    started_at: float = 0.0
    #: When the dead child is due to start again (monotonic), else None.
    restart_at: float | None = None
    #: Exits in a row each within ``STABLE_AFTER_S`` of a start; one after a longer run is the first.
    quick_exits: int = 0


class _Parent:
    """The children of one ``serve_workers``: start, supervise, stop."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self._settings = settings
        self._fork = multiprocessing.get_context("fork")
        self.children = [_Child(i, spool) for i, spool in
                         enumerate(spool_dirs(Path(settings.gateway.spool_dir), workers))]

    def start(self, child: _Child) -> None:
        process = self._fork.Process(target=_serve_child, name=f"gateway-worker-{child.index}",
                                     args=(self._settings, child.spool, os.getpid()))
        process.start()
        child.process, child.started_at, child.restart_at = process, time.monotonic(), None
        log.info("gateway worker %d started (pid %s, spool %s)", child.index, process.pid,
                 child.spool)

    def check(self, now: float) -> int | None:
        """One supervision step; the gateway's exit status once it must stop, else None."""
        for child in self.children:
            assert child.process is not None
            if child.restart_at is None and not child.process.is_alive():
                status = self._exited(child, now)
                if status is not None:
                    return status
            elif child.restart_at is not None and now >= child.restart_at:
                self.start(child)
        return None

    def _exited(self, child: _Child, now: float) -> int | None:
        """Schedule a dead child's restart; a status if it must not be restarted."""
        assert child.process is not None
        code, pid = child.process.exitcode, child.process.pid
        if code == CONFIG_ERROR_EXIT:
            log.error("gateway worker %d (pid %s) cannot start with this configuration "
                      "(see above); stopping the gateway", child.index, pid)
            return CONFIG_ERROR_EXIT
        quick = now - child.started_at < STABLE_AFTER_S
        child.quick_exits = child.quick_exits + 1 if quick else 1
        if child.quick_exits >= MAX_QUICK_EXITS:
            log.error("gateway worker %d exited %d times in a row within %.0f s of its start "
                      "(last: %s); stopping the gateway", child.index, child.quick_exits,
                      STABLE_AFTER_S, _exit_text(code))
            return 1
        delay = min(FIRST_BACKOFF_S * 2 ** (child.quick_exits - 1), MAX_BACKOFF_S)
        child.restart_at = now + delay
        log.error("gateway worker %d (pid %s) exited with %s; restarting it in %.1f s",
                  child.index, pid, _exit_text(code), delay)
        return None

    def stop(self) -> None:
        """SIGTERM to every child, then wait for each; SIGKILL past ``STOP_TIMEOUT_S``."""
        running = [c.process for c in self.children if c.process and c.process.is_alive()]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("%s did not stop in %.0f s; killing it", process.name, STOP_TIMEOUT_S)
                process.kill()
                process.join()
        log.info("gateway workers stopped")


def serve_workers(settings: Settings, workers: int, stop: threading.Event) -> int:
    """Run ``workers`` gateway processes on one port until ``stop``; the exit status.

    0 after ``stop``; 2 or 1 when a child cannot start (see the module doc).
    Call ``check_start`` first.
    """
    parent = _Parent(settings, workers)
    for child in parent.children:
        parent.start(child)
    try:
        while not stop.wait(POLL_S):
            status = parent.check(time.monotonic())
            if status is not None:
                return status
        return 0
    finally:
        parent.stop()
