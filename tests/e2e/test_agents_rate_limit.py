"""The real Claude Code and Codex CLI at a rate limit: they back off on the gateway's 429 and finish.

Both are installed from the npm registry as a user would (``deploy/agents/install-agents``,
into ``~/.cache/meterline/npm``) and run non-interactively against a real pipeline (broker,
ClickHouse in chdb, the simulated provider upstream), each in a HOME of its own:

- Claude Code: ``claude -p`` with ``ANTHROPIC_BASE_URL`` at the gateway and the virtual key in
  ``ANTHROPIC_API_KEY`` (Messages API, streamed), auto-update and non-essential traffic off.
- Codex CLI: ``codex exec`` with a custom provider in ``$CODEX_HOME/config.toml`` whose
  ``base_url`` is the gateway's ``/v1`` on ``wire_api = "responses"`` (streamed; Codex no
  longer takes ``"chat"``), its key in the variable the provider's ``env_key`` names.

Each tool runs twice back to back on a key minted with ``--rpm 1``: the first run spends the
minute; the second is refused with 429 and ``retry-after`` (the rest of the minute, so up to
60 s), must wait, retry and finish. The ledger's window is a rolling minute, so no limit
frees sooner after the call that filled it. Checked: both runs exit 0 and print the
simulated answer, and ClickHouse holds the key's calls as 200, then ``RateLimited`` 429s,
then a 200 of the same run. Nothing is timed.

The tier is skipped only where the npm registry cannot be reached (``install-agents`` exit 3,
its one line the reason); any other install failure fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from meterline.simulator.text import _WORDS as SIMULATED_WORDS
from tests.harness import REPO_ROOT, Pipeline

INSTALL_AGENTS = REPO_ROOT / "deploy" / "agents" / "install-agents"
#: ``install-agents``' exit status when the npm registry cannot be reached.
EXIT_UNREACHABLE = 3
#: One run of a tool, its wait at the limit included (retry-after is at most 60 s).
RUN_TIMEOUT_S = 240
#: The user's environment, less what would point a tool elsewhere or lend it another key.
FOREIGN_ENV = ("ANTHROPIC_", "OPENAI_", "CLAUDE_", "CODEX_")

# a first install downloads ~800 MB (both tools' native binaries) inside the first test
pytestmark = [pytest.mark.e2e, pytest.mark.store, pytest.mark.timeout(900)]

CODEX_CONFIG = """\
model = "gpt-4o-mini"
model_provider = "meterline"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
apps = false

[model_providers.meterline]
name = "Meterline gateway"
base_url = "{gateway}/v1"
env_key = "METERLINE_VIRTUAL_KEY"
wire_api = "responses"
"""


@pytest.fixture(scope="module")
def agents_bin() -> Path:
    """The folder holding ``claude`` and ``codex``, installed if needed."""
    result = subprocess.run([str(INSTALL_AGENTS)], capture_output=True, text=True, timeout=840,
                            stdin=subprocess.DEVNULL)
    if result.returncode == EXIT_UNREACHABLE:
        lines = [line for line in result.stderr.splitlines()
                 if line.startswith("agent tier skipped")]
        pytest.skip(lines[-1] if lines else result.stderr.strip())
    assert result.returncode == 0, f"install-agents failed ({result.returncode}):\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def agent_pipeline(tmp_path_factory: pytest.TempPathFactory, broker: str,
                   simulator: str) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path_factory.mktemp("agents"), broker, simulator).start()
    yield running
    running.stop()


@dataclass
class Run:
    """One run of a tool: its exit, output and own log (Claude Code's debug file, Codex's
    stderr)."""

    name: str
    returncode: int
    stdout: str
    stderr: str
    log: str

    def describe(self) -> str:
        return (f"{self.name}: exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n"
                f"--- stderr\n{self.stderr[-3000:]}\n--- log (tail)\n{self.log[-6000:]}")


def mint_one_rpm(pipeline: Pipeline, user: str) -> tuple[str, str]:
    """A key of ``user``'s own in team platform, allowed one request a minute: (key, key id)."""
    cli = [sys.executable, "-m", "meterline.cli.main", "--config", str(pipeline.config), "keys"]
    created = subprocess.run([*cli, "create", "--user", user, "--team", "platform", "--rpm", "1",
                              "--name", user], capture_output=True, text=True, cwd=REPO_ROOT,
                             timeout=60)
    assert created.returncode == 0, created.stderr
    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=60)
    key_id = next(line.split("\t")[0] for line in listed.stdout.splitlines()
                  if f"\t{user}\t" in line)
    return created.stdout.strip().splitlines()[-1], key_id


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    for folder in (home, home / ".config", home / ".cache", home / ".local" / "share"):
        folder.mkdir(parents=True, exist_ok=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith(FOREIGN_ENV)}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local" / "share"),
               NO_COLOR="1", **extra)
    return env


def run_tool(name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path | None
             ) -> Run:
    cwd.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    own_log = log.read_text(errors="replace") if log is not None and log.exists() else ""
    return Run(name, result.returncode, result.stdout, result.stderr, own_log or result.stderr)


def run_claude(bin_dir: Path, pipeline: Pipeline, key: str, work: Path, prompt: str,
               name: str) -> Run:
    log = work / f"{name}.debug.log"
    env = agent_env(work / "home", ANTHROPIC_BASE_URL=pipeline.gateway_url,
                    ANTHROPIC_API_KEY=key, DISABLE_AUTOUPDATER="1",
                    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_TELEMETRY="1",
                    DISABLE_ERROR_REPORTING="1")
    return run_tool(name, [str(bin_dir / "claude"), "-p", prompt, "--debug-file", str(log)],
                    env, work / "project", log)


def run_codex(bin_dir: Path, pipeline: Pipeline, key: str, work: Path, prompt: str,
              name: str) -> Run:
    codex_home = work / "codex-home"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(gateway=pipeline.gateway_url))
    env = agent_env(work / "home", CODEX_HOME=str(codex_home), METERLINE_VIRTUAL_KEY=key,
                    RUST_LOG="warn")
    return run_tool(name, [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", prompt],
                    env, work / "project", None)


def simulated_answer(stdout: str) -> str:
    """The line of ``stdout`` that is a sentence of the simulated provider's, else ""."""
    for line in stdout.splitlines():
        line = line.strip()
        if re.fullmatch(r"[A-Z][a-z]*(?: [a-z]+)*\.", line) and all(
                word in SIMULATED_WORDS for word in line[:-1].lower().split(" ")):
            return line
    return ""


Call = tuple[datetime, int, str]  # received_at, status, error_class


def calls_of(pipeline: Pipeline, key_id: str) -> list[Call]:
    return [(datetime.fromisoformat(row[0]), int(row[1]), row[2]) for row in pipeline.sql(
        f"SELECT toString(received_at), status, error_class FROM events FINAL "
        f"WHERE key_id = '{key_id}' ORDER BY received_at")]


def backed_off(calls: list[Call]) -> bool:
    """A first call served, then a 429, then a call served after it."""
    first_429 = next((i for i, call in enumerate(calls) if call[1] == 429), None)
    return (first_429 is not None and calls[0][1] == 200
            and any(call[1] == 200 for call in calls[first_429 + 1:]))


def stored_calls(pipeline: Pipeline, key_id: str, timeout_s: float = 60) -> list[Call]:
    """The key's calls once they show the back-off (or whatever is stored at the deadline)."""
    deadline = time.monotonic() + timeout_s
    calls = calls_of(pipeline, key_id)
    while not backed_off(calls) and time.monotonic() < deadline:
        time.sleep(0.5)
        calls = calls_of(pipeline, key_id)
    return calls


def show(calls: list[Call]) -> str:
    lines, previous = [], None
    for received_at, status, error_class in calls:
        gap = f" (+{(received_at - previous).total_seconds():.1f}s)" if previous else ""
        lines.append(f"{received_at.isoformat()}{gap} {status} {error_class}")
        previous = received_at
    return "\n".join(lines)


def check_backed_off_and_finished(pipeline: Pipeline, key_id: str, second: Run,
                                  retry_lines: list[str]) -> None:
    calls = stored_calls(pipeline, key_id)
    report = (f"\n--- the key's calls in ClickHouse\n{show(calls)}\n--- the tool's retries\n"
              + "\n".join(retry_lines))
    assert second.returncode == 0, second.describe() + report
    assert simulated_answer(second.stdout), second.describe() + report
    limited = int(pipeline.scalar(f"SELECT count() FROM events WHERE key_id = '{key_id}' "
                                  "AND error_class = 'RateLimited'"))
    assert limited >= 1, report
    assert backed_off(calls), report
    assert {status for _, status, _ in calls} <= {200, 429}, report
    assert all(error == "RateLimited" for _, status, error in calls if status == 429), report


Scenario = tuple[str, Run, list[str]]  # the key's id, the second run, its retry lines


#: Each tool: how to run it, where its retries are logged, and which lines say so.
TOOLS: dict[str, tuple[Callable[..., Run], Callable[[Run], str], tuple[str, ...]]] = {
    "claude": (run_claude, lambda run: run.log, ("API error", "API REQUEST")),
    "codex": (run_codex, lambda run: run.stderr, ("retrying", "Reconnecting")),
}


def scenario(tool: str, agents_bin: Path, pipeline: Pipeline, work: Path) -> Scenario:
    """A first run that spends the key's minute, then a second that must wait it out."""
    run, log_of, markers = TOOLS[tool]
    key, key_id = mint_one_rpm(pipeline, f"{tool}-dev")
    first = run(agents_bin, pipeline, key, work, "Say hello", "first")
    assert first.returncode == 0, first.describe()
    assert simulated_answer(first.stdout), first.describe()
    second = run(agents_bin, pipeline, key, work, "Say hello again", "second")
    return key_id, second, [line for line in log_of(second).splitlines()
                            if any(marker in line for marker in markers)]


def test_claude_code_and_codex_wait_out_the_limit_and_finish(
        agents_bin: Path, agent_pipeline: Pipeline, tmp_path: Path) -> None:
    """Both tools at once, each on its own key (their minute-long waits overlap)."""
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(scenario, tool, agents_bin, agent_pipeline, tmp_path / tool)
                for tool in TOOLS]
        for run in runs:
            key_id, second, retries = run.result()
            check_backed_off_and_finished(agent_pipeline, key_id, second, retries)
