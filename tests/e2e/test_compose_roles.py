"""Issue 17, item 5: the compose deployment minus Docker.

docker-compose.yml is parsed, and its Meterline services start as separate
processes in compose's order (``depends_on``): ``init`` to completion, then
``store``, the ``worker`` replicas, ``detector``, ``simulator`` and ``gateway``,
each with the command and environment its service has in the file (anchors and
``${VAR...}`` resolved as compose does, from a ``.env`` that holds only the store's
two credentials). Then one call through the gateway must become one priced row,
read with ``meterline sql`` from the store's environment
(``docker compose exec store meterline sql ...``).

What differs from ``docker compose up``, and why:

- ``kafka`` is not the container but Apache Kafka at the same version, from
  ``deploy/kafka/kafka-local`` (a broker of this test's own, on loopback); the
  test asserts the compose image tag names that version.
- ``clickhouse`` is not a server: there is no ClickHouse server binary here
  (Debian's clickhouse-server is 18.16, far older than the schema needs), so
  ``METERLINE_CLICKHOUSE__DSN`` becomes a chdb DSN in the store's state folder.
- Host names and ports: ``kafka:9092``, ``store``, ``simulator:8090`` and the
  ``0.0.0.0`` binds become 127.0.0.1 on free ports; compose's fixed ports 8080
  and 8124 (one network namespace per container there) are set per test with
  ``METERLINE_GATEWAY__PORT`` and ``METERLINE_STORE__PORT``.
- Volumes: the bind-mounted ``meterline.yaml`` is copied into the test's
  folder at its container path, and the named volume ``meterline-state`` is
  one folder that every service shares, as the volume is.
- The two ``worker`` replicas: compose gives each container its own host name,
  from which each derives its static group member id; on one host each replica
  gets its own ``METERLINE_KAFKA__GROUP_INSTANCE_ID`` instead (docs/scale-out.md).
- Grafana is not a Meterline role and is not started.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import openai
import pytest
import yaml

from meterline.embedded import free_port, wait_for_port
from tests.backends import LocalKafka, kafka_version
from tests.harness import REPO_ROOT, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
#: compose services that are not Meterline roles here (see the module docstring)
NOT_STARTED = {"kafka", "clickhouse", "grafana"}
_INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
_ASSIGNED = re.compile(r"enrich assigned (.*)$", re.MULTILINE)


def interpolate(value: str, environment: dict[str, str]) -> str:
    """compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and the required
    ``${VAR:?message}`` / ``${VAR?message}`` (an error when ``VAR`` is unset)."""
    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        value = environment.get(name)
        if operator.endswith("?"):
            if not value if operator == ":?" else value is None:
                raise ValueError(f"compose: {name} is required: {argument}")
            return str(value)
        if value is None or (operator == ":-" and not value):
            return argument
        return value
    return _INTERPOLATION.sub(substitute, value)


@dataclass
class Service:
    """One compose service as a process: its command, environment and start order."""

    service: str
    name: str
    command: list[str]
    environment: dict[str, str]
    depends_on: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, workdir: Path) -> None:
        self.log_path = workdir / f"{self.name}.log"
        # compose's environment, plus only what a Python process needs to run here
        base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "PYTHONPATH")
                if name in os.environ}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "meterline.cli.main", *self.command],
                env={**base, **self.environment}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=workdir)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


@dataclass
class Deployment:
    """The compose file's Meterline services, translated to this host (module docstring)."""

    services: list[Service]
    gateway_url: str
    store_port: int
    workdir: Path

    def logs(self) -> str:
        return "\n".join(f"===== {s.name}\n{s.log()[-3000:]}" for s in self.services)

    def cli(self, service: str, *args: str) -> str:
        """``docker compose exec <service> meterline <args>``: stdout."""
        env = next(s for s in self.services if s.name == service).environment
        base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "PYTHONPATH")
                if name in os.environ}
        result = subprocess.run([sys.executable, "-m", "meterline.cli.main", *args],
                                env={**base, **env}, cwd=self.workdir, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, f"meterline {' '.join(args)}: {result.stderr}"
        return result.stdout


def load_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def translate(compose: dict[str, Any], workdir: Path, kafka: str,
              dotenv: dict[str, str]) -> Deployment:
    """compose's services as processes on this host: hosts, ports, volumes, the DSN.

    ``dotenv`` is what the operator's ``.env`` holds (here: only the store's two
    credentials, which compose requires; no provider keys, so the simulator serves).
    """
    gateway_port, store_port, simulator_port = free_port(), free_port(), free_port()
    volumes = workdir / "volumes"
    mounts: dict[str, Path] = {}
    services: list[Service] = []
    for name, spec in compose["services"].items():
        if name in NOT_STARTED:
            continue
        for volume in spec.get("volumes", []):
            source, target = volume.split(":")[:2]
            host = workdir / "mounts" / target.lstrip("/") if source.startswith(".") \
                else volumes / source
            if source.startswith("."):  # a bind mount: the file at its container path
                host.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO_ROOT / source, host)
            else:
                host.mkdir(parents=True, exist_ok=True)
            mounts[target] = host
        environment = {key: interpolate(str(value), dotenv)
                       for key, value in (spec.get("environment") or {}).items()}
        for key, value in environment.items():
            for target, host in mounts.items():
                if value == target or value.startswith(target + "/"):
                    environment[key] = str(host) + value[len(target):]
            environment[key] = (environment[key].replace("kafka:9092", kafka)
                                .replace("simulator:8090", f"127.0.0.1:{simulator_port}"))
            if key.endswith("__HOST") and environment[key] in ("0.0.0.0", "store"):
                environment[key] = "127.0.0.1"
        dsn = environment.get("METERLINE_CLICKHOUSE__DSN", "")
        assert dsn.startswith("http://") and "@clickhouse:8123" in dsn, dsn
        environment["METERLINE_CLICKHOUSE__DSN"] = f"chdb://{volumes / 'meterline-state'}/clickhouse"
        environment["METERLINE_GATEWAY__PORT"] = str(gateway_port)
        environment["METERLINE_STORE__PORT"] = str(store_port)
        command = [str(part) for part in spec["command"]]
        if name == "simulator":
            command = [{"0.0.0.0": "127.0.0.1", "8090": str(simulator_port)}.get(part, part)
                       for part in command]
        depends = {dep: (cond or {}).get("condition", "service_started")
                   for dep, cond in (spec.get("depends_on") or {}).items()}
        replicas = int((spec.get("deploy") or {}).get("replicas", 1))
        for replica in range(1, replicas + 1):
            env = dict(environment)
            label = name
            if replicas > 1:
                label = f"{name}-{replica}"
                env["METERLINE_KAFKA__GROUP_INSTANCE_ID"] = label
            services.append(Service(name, label, command, env, depends))
    return Deployment(services, f"http://127.0.0.1:{gateway_port}", store_port, workdir)


def start_in_order(deployment: Deployment) -> None:
    """Start as ``depends_on`` says: after each dependency started, or exited with 0.

    The services not started here count as healthy: the broker answers, chdb needs no server.
    """
    state = dict.fromkeys(NOT_STARTED, "healthy")
    pending = list(deployment.services)

    def satisfied(dependency: str, condition: str) -> bool:
        if condition == "service_completed_successfully":
            return state.get(dependency) in ("completed", "healthy")
        return dependency in state

    while pending:
        ready = [s for s in pending if all(satisfied(d, c) for d, c in s.depends_on.items())]
        assert ready, f"no service can start: {[s.name for s in pending]}"
        for service in ready:
            service.start(deployment.workdir)
            pending.remove(service)
            state[service.service] = "started"
        for service in ready:
            if any(p.depends_on.get(service.service) == "service_completed_successfully"
                   for p in pending):
                assert service.process is not None
                code = service.process.wait(120)
                assert code == 0, f"{service.name} exited {code}:\n{service.log()}"
                state[service.service] = "completed"


@pytest.fixture
def compose_kafka(kafka_jars: str, tmp_path: Path) -> Iterator[LocalKafka]:
    broker = LocalKafka(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def deployment(tmp_path: Path, compose_kafka: LocalKafka) -> Iterator[Deployment]:
    dotenv = {"METERLINE_STORE_READ_TOKEN": secrets.token_urlsafe(32),
              "METERLINE_STORE_OPERATOR_TOKEN": secrets.token_urlsafe(32)}
    running = translate(load_compose(), tmp_path, compose_kafka.bootstrap_servers, dotenv)
    try:
        start_in_order(running)
        wait_for_port("127.0.0.1", running.store_port, 90)
        wait_for_port("127.0.0.1", int(running.gateway_url.rsplit(":", 1)[1]), 90)
    except (AssertionError, TimeoutError) as exc:
        for service in reversed(running.services):
            service.stop()
        raise AssertionError(f"compose roles did not start: {exc}\n{running.logs()}") from exc
    yield running
    for service in reversed(running.services):
        service.stop()


def test_compose_file_runs_the_kafka_version_the_tests_use() -> None:
    image = load_compose()["services"]["kafka"]["image"]
    assert image == f"apache/kafka:{kafka_version()}"


def test_compose_roles_turn_one_call_into_one_priced_row(deployment: Deployment) -> None:
    names = [s.name for s in deployment.services]
    assert names.count("worker-1") == names.count("worker-2") == 1
    assert all(s.process is not None and s.process.poll() is None
               for s in deployment.services if s.name != "init"), deployment.logs()
    # the two replicas split the envelopes' partitions between them (compose's scale-out)
    workers = [s for s in deployment.services if s.service == "worker"]
    partitions = int(workers[0].environment["METERLINE_KAFKA__PARTITIONS"])

    def split() -> list[set[str]] | None:
        latest = [_ASSIGNED.findall(w.log()) for w in workers]
        if not all(latest):
            return None
        shares = [set(found[-1].split(", ")) for found in latest]
        whole = set().union(*shares)
        return shares if len(whole) == sum(map(len, shares)) == partitions else None

    shares = wait_until(split, 60, 0.5, message=f"the {partitions} partitions split between the workers")
    assert all(shares)
    key = deployment.cli("gateway", "keys", "create", "--user", "alice", "--team", "platform"
                         ).strip().splitlines()[-1]
    started = time.monotonic()
    client = openai.OpenAI(base_url=deployment.gateway_url + "/v1", api_key=key)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Summarise our spend."}])
    assert reply.usage is not None

    def rows() -> list[list[str]]:
        out = deployment.cli("store", "sql", "--format", "TabSeparated",
                             "SELECT user, team, served_model, input_tokens, output_tokens, "
                             "cost_usd, unpriced FROM events")
        return [line.split("\t") for line in out.splitlines() if line]

    try:
        stored = wait_until(rows, 120, 1.0, message="one row in ClickHouse")
    except AssertionError:
        print(deployment.logs())
        raise
    stored_s = time.monotonic() - started
    assert len(stored) == 1
    user, team, model, tokens_in, tokens_out, cost, unpriced = stored[0]
    assert (user, team, model, unpriced) == ("alice", "platform", "gpt-4o-mini", "false")
    assert (int(tokens_in), int(tokens_out)) == (reply.usage.prompt_tokens,
                                                 reply.usage.completion_tokens)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=reply.usage.prompt_tokens,
                           output_tokens=reply.usage.completion_tokens),
        "gpt-4o-mini", provider_id="openai").total_price
    assert Decimal(cost) == expected > 0
    print(f"\ncompose roles on Apache Kafka {kafka_version()}: the call stored as a priced row "
          f"{stored_s:.1f}s after it was sent")
