"""``meterline up`` as a user runs it, for the supervision and Ctrl-C tests.

``UpRun`` is a ``Pipeline`` whose roles are not started one by one by the
test but by ``meterline up`` itself (embedded broker on a free port, its own
simulated provider, ClickHouse in its store): the test only sees what a
user sees, the printed lines, the ports, and the supervisor's state file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from meterline.embedded import free_port
from tests.harness import REPO_ROOT, STORE_TOKEN_ENV, TEST_BODY_KEY, Pipeline, wait_until

#: How long a role restarted by ``up`` may take to serve again (store: migrations and
#: chdb start; processors: the group join on tansu).
RESTART_TIMEOUT_S = 60


class UpRun(Pipeline):
    """One ``meterline up`` process tree on free ports in ``workdir``."""

    def __init__(self, workdir: Path, extra_config: dict[str, Any] | None = None) -> None:
        config = {"kafka": {"embedded": True}, "store": {"max_batch_time_s": 0.2},
                  "gateway": {"spool_segment_max_age_s": 1.0}, **(extra_config or {})}
        super().__init__(workdir, f"127.0.0.1:{free_port()}", "", extra_config=config)
        self.roles = {}
        self.output_path = workdir / f"up-{free_port()}.out"  # one per run in the same workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in_s = 0.0

    @property
    def state_path(self) -> Path:
        return self.workdir / "data" / "run" / "roles.json"

    def start(self) -> UpRun:
        # configured tokens: up then uses them instead of generating its own
        env = {**os.environ, "METERLINE_EGRESS__BODY_KEY": TEST_BODY_KEY, **STORE_TOKEN_ENV}
        started = time.monotonic()
        with open(self.output_path, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "meterline.cli.main", "--config", str(self.config), "up"],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
                env=env, start_new_session=True)
        try:
            wait_until(lambda: "ready: press Ctrl-C" in self.output() or self.process_exited(),
                       180, 0.2, message="`meterline up` ready")
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}\n{self.output()[-4000:]}\n{self.logs()}") from exc
        assert not self.process_exited(), self.output()[-4000:]
        self.started_in_s = time.monotonic() - started
        return self

    def process_exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def output(self) -> str:
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    def state(self) -> dict[str, dict[str, Any]]:
        try:
            state: dict[str, dict[str, Any]] = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state

    def pids(self) -> dict[str, int]:
        return {role: figures["pid"] for role, figures in self.state().items() if figures["pid"]}

    def kill_role(self, role: str) -> int:
        """SIGKILL one role; returns the restarts count it had."""
        figures = self.state()[role]
        os.kill(figures["pid"], signal.SIGKILL)
        return int(figures["restarts"])

    def wait_restarted(self, role: str, restarts_before: int) -> None:
        wait_until(lambda: self.state().get(role, {}).get("restarts", 0) > restarts_before
                   and self.state()[role]["running"] and alive(self.state()[role]["pid"]),
                   RESTART_TIMEOUT_S, 0.2, message=f"{role} restarted by up")

    def interrupt(self) -> float:
        """Ctrl-C as a terminal sends it (SIGINT to up's process group); seconds until up exits."""
        assert self.process is not None
        pids = self.pids()
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(60)
        wait_until(lambda: not any(alive(pid) for pid in pids.values()), 60, 0.05,
                   message="every role of up gone")
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.interrupt()

    def logs(self) -> str:
        log_dir = self.workdir / "data" / "logs"
        return "\n".join(f"===== {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(log_dir.glob("*.log")))


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
