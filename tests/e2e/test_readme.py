"""The README is a contract: its Quickstart, run as a newcomer runs it.

In a clean clone of HEAD, with a virtualenv of its own and an environment
without any Slack, provider or Meterline variable, the test runs the
README's own shell blocks, read from README.md (so a README edit that
breaks them fails here):

1. ``make up`` becomes ready (its first command, verbatim);
2. the "in another shell" block: ``keys create``, the openai snippet and
   ``meterline sql`` show the call as a priced row;
3. ``meterline simulate --month 2026-10 --report`` ends cleanly: the month's
   chargeback, reconciled, and its budget alerts as a dry run (no webhook needed);
4. Ctrl-C (SIGINT to make's process group, as a terminal sends it) stops
   every process within five seconds.

It prints the times a newcomer sees. The ports are the shipped
``meterline.yaml``'s (8080, 8124, 19092): nothing else may hold them.

The virtualenv sees this machine's installed dependencies (like a pip cache
would) but not its editable Meterline: ``make up`` installs the clone itself.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.e2e.up_harness import alive
from tests.harness import REPO_ROOT, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

#: Variables a newcomer's shell does not have.
_SECRET_OR_CONFIG = re.compile(r"^(SLACK_|OPENAI_|ANTHROPIC_|METERLINE_)")


def shell_blocks(readme: str) -> list[str]:
    """Every ```sh block of the README, in order."""
    return re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)


def block_with(blocks: list[str], text: str) -> str:
    found = [block for block in blocks if text in block]
    assert len(found) == 1, f"the README should have one sh block with {text!r}"
    return found[0]


def newcomer_venv(path: Path) -> Path:
    """A venv whose site-packages sees the installed dependencies but no Meterline.

    A ``.pth`` line adds the interpreter's own site-packages to ``sys.path``
    without processing the ``.pth`` files inside it, so the editable install
    of the repository under test is not loaded; ``make up`` installs the clone.
    """
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    purelib = Path(sysconfig.get_paths()["purelib"])
    (site,) = path.glob("lib/python*/site-packages")
    (site / "machine-packages.pth").write_text(f"{purelib}\n")
    return path / "bin"


def test_the_readme_quickstart_works_on_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "meterline"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True, timeout=120)
    bin_dir = newcomer_venv(tmp_path / "venv")
    env = {name: value for name, value in os.environ.items()
           if not _SECRET_OR_CONFIG.match(name) and name not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}", HOME=str(tmp_path / "home"),
               VIRTUAL_ENV=str(bin_dir.parent))
    blocks = shell_blocks((clone / "README.md").read_text())
    assert "make up" in block_with(blocks, "make test")

    output = tmp_path / "make-up.out"
    started = time.monotonic()
    with open(output, "wb") as out:
        make = subprocess.Popen(["make", "up"], cwd=clone, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        def printed() -> str:
            return output.read_text(errors="replace")

        wait_until(lambda: "ready: press Ctrl-C" in printed() or make.poll() is not None, 420,
                   0.5, message="make up ready")
        assert make.poll() is None, printed()[-5000:]
        ready_s = time.monotonic() - started
        shown = printed()
        assert "dashboard   http://127.0.0.1:8080/ui" in shown
        assert "meterline keys create --admin" in shown
        assert "budget alerts not delivered" in (clone / ".meterline/logs/store.log").read_text()

        another_shell = block_with(blocks, "meterline keys create")
        first_call = time.monotonic()
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", another_shell], cwd=clone,
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        rows = wait_for_priced_row(another_shell, clone, env)
        first_row_s = time.monotonic() - first_call
        assert re.search(r"alice\s+│\s+platform\s+│\s+acme/api\s+│\s+gpt-4o-mini", rows), rows

        month = block_with(blocks, "meterline simulate --month")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", month], cwd=clone, env=env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert "chargeback 2026-10: " in result.stdout and "reconciled" in result.stdout
        assert "budget alerts due at 2026-11-01 00:00 UTC (dry run" in result.stderr
        assert re.search(r"^ledger matches provider reports: \d+ model-days of "
                         r"openai, anthropic, 2026-10-01 to 2026-11-01", result.stdout,
                         flags=re.MULTILINE), result.stdout[-3000:]
        assert re.search(r"^unmetered spend, \$[\d.]+ that bypassed the gateway",
                         result.stdout, flags=re.MULTILINE), result.stdout[-3000:]
        assert re.search(r"^dry run at 2026-11-01T00:00:00\+00:00: 3 budgets, \d+ alerts due$",
                         result.stdout, flags=re.MULTILINE), result.stdout[-3000:]

        pids = json.loads((clone / ".meterline/run/roles.json").read_text())
        interrupted = time.monotonic()
        os.killpg(make.pid, signal.SIGINT)
        make.wait(30)
        wait_until(lambda: not any(alive(role["pid"]) for role in pids.values()), 30, 0.05,
                   message="every process of make up gone")
        stopped_s = time.monotonic() - interrupted
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    assert stopped_s <= 5.0, f"Ctrl-C took {stopped_s:.1f}s"
    print(f"\nREADME: make up ready after {ready_s:.1f}s (fresh clone and venv), first row "
          f"{first_row_s:.1f}s after the first call, stopped {stopped_s:.1f}s after Ctrl-C")


def wait_for_priced_row(block: str, clone: Path, env: dict[str, str]) -> str:
    """Re-run the block's ``meterline sql`` line until the call's row is there and priced."""
    (query,) = [line for line in block.splitlines() if line.startswith("meterline sql")]

    def priced() -> str:
        result = subprocess.run(["bash", "-c", query], cwd=clone, env=env, capture_output=True,
                                text=True, timeout=60)
        rows = result.stdout
        return rows if re.search(r"│\s+0\.0*[1-9]\d*\s+│", rows) else ""

    text: str = wait_until(priced, 90, 1.0, message="the call's priced row")
    return text
