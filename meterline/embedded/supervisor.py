"""The process supervisor of ``meterline up``: start roles, restart the ones that die, stop all.

Each role runs as its own OS process (``python -m meterline.cli.main <role>``,
or the broker binary) so a crash in one is visible and the chdb data has
exactly one owner. Logs go to one file per role.

Supervision, as a service manager does it (systemd's ``Restart=always``):

1. ``start`` launches a role in a session of its own, so a Ctrl-C that the
   terminal sends to the whole foreground group reaches only ``up``, which
   then stops the roles in order instead of all of them racing. Each child
   also asks the kernel for SIGKILL when ``up`` dies (``PR_SET_PDEATHSIG``),
   so even a SIGKILLed ``up`` leaves no role behind.
2. ``watch`` polls the children. A role that exits while nobody asked it to
   is logged with its exit code and restarted after a backoff (0.5 s,
   doubling up to 30 s; back to 0.5 s once it has run for a minute), and its
   ``after_start`` hook runs again (the broker's re-creates the topics). The
   other roles keep running meanwhile: above all the gateway, whose spool
   holds every envelope the pipeline cannot take yet. Restarts are counted
   in a state file that the gateway's ``/metrics`` reads.
3. ``stop`` ends every role within ``deadline_s``: the gateway first (SIGTERM:
   it finishes its calls and spools their envelopes), then the rest together,
   the broker last, and SIGKILL for whatever outlives its phase. Killing a
   processor or the store is safe at any point: they commit only what is
   stored, and the spool replays the rest on the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0
#: A role that ran this long before dying starts over at the first backoff.
_STABLE_AFTER_S = 60.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL this child when ``up`` exits, however it exits."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the orderly stop still ends them
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def role_argv(role: str, *args: str) -> list[str]:
    """The command line that runs one Meterline role with this interpreter."""
    return [sys.executable, "-m", "meterline.cli.main", role, *args]


@dataclass
class ManagedProcess:
    """One supervised role: its command line, its current process and its restart history."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    #: Runs after every (re)start, e.g. wait for the port and create topics.
    after_start: Callable[[], None] | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    started_at: float = 0.0
    #: When a dead role is due to start again (monotonic), else None.
    restart_at: float | None = None
    _backoff_s: float = field(default=_FIRST_BACKOFF_S, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=output, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()
        self.restart_at = None
        if self.after_start is not None:
            self.after_start()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def schedule_restart(self, now: float) -> float:
        """Record the exit and pick the restart time; returns the backoff chosen."""
        self.last_exit_code = self.exit_code()
        if now - self.started_at >= _STABLE_AFTER_S:
            self._backoff_s = _FIRST_BACKOFF_S
        delay = self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, _MAX_BACKOFF_S)
        self.restart_at = now + delay
        return delay

    def terminate(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.running():
            assert self.process is not None
            log.warning("%s did not stop in time; killing it", self.name)
            self.process.kill()
        if self.process is not None:
            self.process.wait()


class Supervisor:
    """The roles of one ``up``; see the module docstring for the policy.

    ``start`` and ``watch`` run on the thread that created the supervisor
    (the children's death signal is tied to it); ``stop`` may run anywhere.
    """

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None, *,
                 state_path: Path | None = None) -> None:
        self.log_dir = log_dir
        self.env = dict(os.environ if env is None else env)
        self.state_path = state_path
        self.processes: list[ManagedProcess] = []
        self._lock = threading.Lock()
        #: Set by ``stop``: from then on nothing is restarted.
        self._stopping = False

    def start(self, name: str, argv: list[str], extra_env: Mapping[str, str] | None = None, *,
              after_start: Callable[[], None] | None = None) -> ManagedProcess:
        managed = ManagedProcess(name, argv, {**self.env, **(extra_env or {})},
                                 self.log_dir / f"{name}.log", after_start)
        managed.start()
        self.processes.append(managed)
        self._write_state()
        return managed

    def role(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    def check(self, now: float | None = None) -> None:
        """One supervision step: schedule restarts for roles that died, start those due."""
        if self._stopping:
            return
        now = time.monotonic() if now is None else now
        changed = False
        for managed in self.processes:
            if managed.restart_at is None and not managed.running():
                delay = managed.schedule_restart(now)
                log.error("%s exited with code %s; restarting it in %.1f s (restart %d)\n%s",
                          managed.name, managed.last_exit_code, delay, managed.restarts + 1,
                          managed.log_tail(10))
                changed = True
            elif managed.restart_at is not None and now >= managed.restart_at:
                managed.restarts += 1
                try:
                    managed.start()
                except Exception:  # a hook failed (e.g. topics not created yet): try again later
                    log.exception("restarting %s failed; trying again", managed.name)
                    managed.schedule_restart(time.monotonic())
                else:
                    log.warning("%s restarted (pid %s, restart %d)", managed.name, managed.pid,
                                managed.restarts)
                changed = True
        if changed:
            self._write_state()

    def watch(self, stop: threading.Event, poll_s: float = 0.2) -> None:
        """Supervise until ``stop`` is set (by a signal handler or a caller)."""
        while not stop.wait(poll_s):
            self.check()

    def stop(self, deadline_s: float = 4.0) -> None:
        """Stop every role within ``deadline_s``, in three phases, then SIGKILL what is left.

        1. The gateway, until half the deadline: it finishes its calls and
           spools their envelopes while the broker is still there to take them.
        2. Every other role but the broker, together, until 90%: processors and
           the store commit what they stored (faust's own shutdown takes 1-3 s).
        3. The broker, until the deadline. Memory storage: nothing to flush.
        """
        started = time.monotonic()
        self._stopping = True
        for managed in self.processes:
            managed.restart_at = None
        phases = ([p for p in self.processes if p.name == "gateway"],
                  [p for p in reversed(self.processes) if p.name not in ("gateway", "broker")],
                  [p for p in self.processes if p.name == "broker"])
        for group, share in zip(phases, (0.5, 0.9, 1.0), strict=True):
            until = started + deadline_s * share
            for managed in group:
                managed.terminate()
            for managed in group:
                if managed.process is None:
                    continue
                try:
                    managed.process.wait(max(0.0, until - time.monotonic()))
                except subprocess.TimeoutExpired:
                    managed.kill()
                log.info("%s stopped (%.1f s after the stop began)", managed.name,
                         time.monotonic() - started)
        self._write_state()

    def _write_state(self) -> None:
        """Each role's pid, liveness and restarts, as JSON, replaced atomically."""
        if self.state_path is None:
            return
        state = {p.name: {"pid": p.pid, "running": p.running(), "restarts": p.restarts,
                          "last_exit_code": p.last_exit_code} for p in self.processes}
        with self._lock:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.state_path.with_suffix(".partial")
            partial.write_bytes(orjson.dumps(state))
            partial.replace(self.state_path)
