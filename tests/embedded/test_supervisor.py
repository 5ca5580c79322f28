"""The supervisor of ``meterline up``: restart with backoff, state for /metrics, bounded stop.

Real child processes (small Python programs), no mocks: what is asserted is
what the kernel reports about them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from meterline.embedded import Supervisor
from tests.harness import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
#: A role that ignores SIGTERM, as a wedged process would.
STUBBORN = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_role_is_restarted_with_backoff_and_counted(tmp_path: Path) -> None:
    state = tmp_path / "roles.json"
    supervisor = Supervisor(tmp_path, state_path=state)
    hooks: list[str] = []
    worker = supervisor.start("worker", SLEEPER, after_start=lambda: hooks.append("worker"))
    other = supervisor.start("gateway", SLEEPER)
    try:
        first_pid = worker.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        wait_until(lambda: not worker.running(), 10, 0.05)
        killed_at = time.monotonic()
        supervisor.check(killed_at)
        assert worker.restart_at == killed_at + 0.5 and not worker.running()
        supervisor.check(killed_at + 0.4)
        assert not worker.running(), "restarted before its backoff"
        supervisor.check(killed_at + 0.5)
        assert worker.running() and worker.pid != first_pid
        assert hooks == ["worker", "worker"], "the start hook runs again on a restart"
        assert other.running(), "the other roles keep running"
        assert json.loads(state.read_text())["worker"] == {
            "pid": worker.pid, "running": True, "restarts": 1, "last_exit_code": -9}

        # dying again soon after: the backoff doubles
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        wait_until(lambda: not worker.running(), 10, 0.05)
        now = time.monotonic()
        supervisor.check(now)
        assert worker.restart_at == now + 1.0
    finally:
        supervisor.stop(deadline_s=2)


def test_stop_ends_every_role_within_the_deadline_even_one_ignoring_sigterm(
        tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    roles = [supervisor.start(name, argv) for name, argv in
             (("broker", SLEEPER), ("store", STUBBORN), ("gateway", SLEEPER))]
    time.sleep(0.3)  # let the stubborn child install its handler
    pids = [role.pid for role in roles]
    started = time.monotonic()
    supervisor.stop(deadline_s=1.5)
    took = time.monotonic() - started
    assert not any(pid is not None and alive(pid) for pid in pids)
    assert roles[1].exit_code() == -signal.SIGKILL, "the stubborn role was killed"
    assert roles[2].exit_code() == -signal.SIGTERM, "the gateway was asked politely"
    assert took < 2.0
    supervisor.check()
    assert all(role.restart_at is None and not role.running() for role in roles), \
        "a stopped role is not restarted"


def test_roles_run_in_sessions_of_their_own(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    role = supervisor.start("worker", SLEEPER)
    try:
        assert role.pid is not None
        assert os.getsid(role.pid) == role.pid != os.getsid(0)
    finally:
        supervisor.stop(deadline_s=1)
