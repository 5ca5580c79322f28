"""A small process supervisor for ``meterline up``: start roles, watch, stop cleanly.

Each role runs as its own OS process (``python -m meterline.cli.main <role>``)
so a crash in one is visible and the chdb data has exactly one owner. Logs go
to one file per role. ``stop`` terminates in reverse start order (gateway
first, so it flushes envelopes while the broker is still up) and kills what
does not exit in time.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], *, env: Mapping[str, str],
                 log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=output,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout_s)
            self.process.kill()
            self.process.wait()


def role_argv(role: str, *args: str) -> list[str]:
    """The command line that runs one Meterline role with this interpreter."""
    return [sys.executable, "-m", "meterline.cli.main", role, *args]


class Supervisor:
    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = dict(os.environ if env is None else env)
        self.processes: list[ManagedProcess] = []

    def start(self, name: str, argv: list[str], extra_env: Mapping[str, str] | None = None
              ) -> ManagedProcess:
        managed = ManagedProcess(name, argv, env={**self.env, **(extra_env or {})},
                                 log_path=self.log_dir / f"{name}.log")
        managed.start()
        self.processes.append(managed)
        return managed

    def first_exited(self) -> ManagedProcess | None:
        return next((p for p in self.processes if p.exit_code() is not None), None)

    def wait(self, poll_s: float = 0.5) -> ManagedProcess | None:
        """Block until a child exits (returned) or SIGINT / SIGTERM arrives (None).

        Both signals are handled explicitly: a shell that starts ``up`` in the
        background makes it ignore SIGINT, and SIGTERM is how service managers stop.
        """
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while (exited := self.first_exited()) is None:
                if stop.wait(poll_s):
                    return None
            return exited
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self, timeout_s: float = 15.0) -> None:
        for managed in reversed(self.processes):
            managed.stop(timeout_s)
