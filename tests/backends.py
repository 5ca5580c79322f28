"""The two brokers the contract suite runs on (arroyo's ``StreamsTestMixin`` pattern).

- ``tansu``: the embedded broker (``meterline.embedded.EmbeddedBroker``), memory
  storage; the pipeline runs with ``kafka.embedded: true``, so the embedded-broker
  policy (``meterline.kafka.quirks``) is on. A restart comes back EMPTY.
- ``kafka``: Apache Kafka 4.x from Maven Central's jars, started by
  ``deploy/kafka/kafka-local`` (KRaft, one node, its log in a temp folder); the
  pipeline runs with ``kafka.embedded: false``, as compose does. A restart on the
  same ports and log dir KEEPS its data.

``LocalKafka.fetch()`` runs the script's ``fetch`` once per session; where Maven
Central cannot be reached the script prints one line starting with
``kafka tier skipped:`` and exits 3, and the fixtures skip the Kafka tier with that
line as the reason (never silently: ``-ra`` lists it).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from meterline.embedded import free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = REPO_ROOT / "deploy" / "kafka" / "kafka-local"
#: ``kafka-local``'s exit status when Maven Central cannot be reached.
EXIT_UNREACHABLE = 3

BrokerKind = Literal["tansu", "kafka"]


class KafkaTierUnavailable(Exception):
    """Maven Central cannot be reached: the Kafka tier is skipped with this reason."""


def fetch_kafka(timeout_s: float = 600) -> str:
    """The jars' cache folder, fetched if needed; ``KafkaTierUnavailable`` where Maven
    Central cannot be reached; ``RuntimeError`` for any other failure (never a skip)."""
    result = subprocess.run([str(KAFKA_LOCAL), "fetch"], capture_output=True, text=True,
                            timeout=timeout_s, stdin=subprocess.DEVNULL)
    if result.returncode == EXIT_UNREACHABLE:
        lines = [line for line in result.stderr.splitlines() if "kafka tier skipped" in line]
        raise KafkaTierUnavailable(lines[-1] if lines else result.stderr.strip())
    if result.returncode != 0:
        raise RuntimeError(f"kafka-local fetch failed ({result.returncode}):\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def kafka_version() -> str:
    result = subprocess.run([str(KAFKA_LOCAL), "version"], capture_output=True, text=True,
                            check=True, timeout=30)
    return result.stdout.strip()


def wait_for_kafka(bootstrap_servers: str, timeout_s: float) -> float:
    """Block until the broker answers a metadata request with itself in it; seconds waited."""
    started = time.monotonic()
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    last: object = None
    while time.monotonic() - started < timeout_s:
        try:
            if admin.list_topics(timeout=1).brokers:
                return time.monotonic() - started
        except KafkaException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"Kafka at {bootstrap_servers} did not answer in {timeout_s}s ({last!r})")


#: The test broker's SASL credentials (test values, not secrets).
SASL_USER = "meterline"
SASL_PASSWORD = "test-sasl-password-0123456789"


class LocalKafka:
    """One Apache Kafka broker (``kafka-local start``) on fixed loopback ports.

    ``start`` blocks until the broker answers; ``stop`` sends SIGTERM (a clean
    shutdown) and waits. Stopping and starting again reuses the ports and the log
    dir under ``workdir``, so the broker keeps its topics, offsets and groups.
    The broker's output goes to ``workdir/kafka.log``.
    """

    def __init__(self, workdir: Path, *, port: int | None = None,
                 controller_port: int | None = None, jvm_env: dict[str, str] | None = None
                 ) -> None:
        self.workdir = workdir
        #: ``KAFKA_HEAP_OPTS`` / ``KAFKA_JVM_PERFORMANCE_OPTS`` for the broker's JVM; the
        #: default is ``kafka-local``'s, a small heap and C1 only, for a fast start.
        self.jvm_env = jvm_env or {}
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        #: A SASL_PLAINTEXT listener too (SCRAM-SHA-512 and PLAIN, ``SASL_USER``), so the
        #: suite can show every client reaching a broker that asks for credentials.
        self.sasl_port = free_port()
        self.log_path = workdir / "kafka.log"
        self.started_in_s = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def start(self, timeout_s: float = 90) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [str(KAFKA_LOCAL), "start", "--dir", str(self.workdir), "--port", str(self.port),
                 "--controller-port", str(self.controller_port),
                 "--sasl-port", str(self.sasl_port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "KAFKA_LOCAL_SASL_USER": SASL_USER,
                     "KAFKA_LOCAL_SASL_PASSWORD": SASL_PASSWORD, **self.jvm_env})
        try:
            deadline = started + timeout_s
            while self._process.poll() is None and time.monotonic() < deadline:
                try:
                    wait_for_kafka(self.bootstrap_servers, 1.0)
                    break
                except TimeoutError:
                    continue
            else:
                raise RuntimeError(f"Kafka did not start (exit {self._process.poll()}):\n"
                                   f"{self.log()[-3000:]}")
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - started

    def stop(self, timeout_s: float = 30) -> None:
        if self._process is None:
            return
        stop_process(self._process, timeout_s)
        self._process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RestartableBroker(Protocol):
    """A broker a test owns: ``stop`` then ``start`` on the same address."""

    @property
    def bootstrap_servers(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Backend:
    """Which broker a contract test runs on, and how the pipeline is configured for it.

    ``embedded`` is what the pipeline's config says as ``kafka.embedded``: true on
    tansu (its policy on), false on Apache Kafka. ``keeps_data`` is what a broker
    restart does: tansu comes back empty, Kafka keeps its logs.
    """

    kind: BrokerKind
    bootstrap_servers: str

    @property
    def embedded(self) -> bool:
        return self.kind == "tansu"

    @property
    def keeps_data(self) -> bool:
        return self.kind == "kafka"


@dataclass(frozen=True)
class OwnBackend(Backend):
    """A backend on a broker of the test's own, which the test may stop and restart."""

    broker: RestartableBroker
