"""Test harness: real parts on loopback, one unique namespace per test.

Nothing here mocks Kafka or ClickHouse. The broker is the embedded tansu
binary, ClickHouse is chdb, and the only fake is the simulated provider, a
real HTTP server. ``Pipeline`` runs the production roles as subprocesses
(``meterline store|worker|gateway``) against a config file it writes, exactly
as ``meterline up`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import uvicorn
import yaml

from meterline.embedded import create_topics, free_port, stop_process, wait_for_port
from meterline.schemas import Topics
from meterline.schemas.store_auth import auth_headers
from meterline.sinks.store_access import StoreAccess

REPO_ROOT = Path(__file__).resolve().parent.parent


def unique_prefix(name: str = "t") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.2,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError on timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{message} not reached in {timeout_s}s (last value: {last!r})")


class CallerThreads:
    """``threads`` daemon threads, each running ``call_until_stopped(index)`` while the
    with-block runs; ``stopping`` turns true when it exits. Subclasses record the calls."""

    def __init__(self, threads: int, join_timeout_s: float) -> None:
        self._stop = threading.Event()
        self._join_timeout_s = join_timeout_s
        self._threads = [threading.Thread(target=self.call_until_stopped, args=(i,), daemon=True)
                         for i in range(threads)]

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def call_until_stopped(self, index: int) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._join_timeout_s)


class ThreadedServer:
    """An ASGI app served by uvicorn in a background thread on a free loopback port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                     log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        wait_for_port("127.0.0.1", self.port, 15)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


DEFAULT_TEAMS = [
    {"name": "platform", "cost_centre": "CC-4100", "lead": "dana@example.com", "budget_usd": 100},
    {"name": "payments", "cost_centre": "CC-5200", "lead": "omar@example.com", "budget_usd": 50},
]


def provider_bill(simulator: Any) -> dict[str, tuple[int, Decimal]]:
    """(requests, cost) per model that ``simulator`` (the simulated provider's app) billed
    so far, over both API shapes."""
    end = int(time.time()) + 3600
    totals: dict[str, tuple[int, Decimal]] = {}
    for kind in ("openai", "anthropic"):
        for _, groups in simulator.state.served.buckets(kind, 0, end, end):
            for group, tally in groups.items():
                requests, cost = totals.get(group.model, (0, Decimal(0)))
                totals[group.model] = (requests + tally.requests, cost + tally.cost)
    return totals


def write_config(path: Path, *, bootstrap: str, prefix: str, chdb_path: Path, gateway_port: int,
                 store_port: int, demo_upstream: str, extra: dict[str, Any] | None = None,
                 embedded: bool = True) -> Path:
    """The roles' config file; ``embedded``: tansu (true) or Apache Kafka (false)."""
    config: dict[str, Any] = {
        "data_dir": str(path.parent / "data"),
        "kafka": {"embedded": embedded, "bootstrap_servers": bootstrap, "topic_prefix": prefix,
                  "partitions": 2},
        "clickhouse": {"dsn": f"chdb://{chdb_path}", "database": "meterline"},
        "gateway": {"host": "127.0.0.1", "port": gateway_port,
                    "spool_dir": str(path.parent / "spool")},
        "store": {"host": "127.0.0.1", "port": store_port, "max_batch_time_s": 0.2},
        "demo_upstream": demo_upstream,
        "providers": {
            "openai": {"kind": "openai", "base_url": "https://api.openai.com",
                       "api_key_env": "METERLINE_TEST_NO_KEY"},
            "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com",
                          "api_key_env": "METERLINE_TEST_NO_KEY"},
        },
        "teams": DEFAULT_TEAMS,
    }
    for section, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **value}
        else:
            config[section] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


#: The key sealing message text between the test gateway and processors (a test value).
TEST_BODY_KEY = "bWV0ZXJsaW5lLXRlc3QtYm9keS1rZXktMzItYnl0ZXM="
#: The store endpoint's two credentials in tests (docs/security.md), and their environment.
TEST_STORE_READ_TOKEN = "test-store-read-token-0123456789abcdefghij"
TEST_STORE_OPERATOR_TOKEN = "test-store-operator-token-0123456789abcdef"
STORE_TOKEN_ENV = {"METERLINE_STORE__READ_TOKEN": TEST_STORE_READ_TOKEN,
                   "METERLINE_STORE__OPERATOR_TOKEN": TEST_STORE_OPERATOR_TOKEN}


def store_access() -> StoreAccess:
    """The store side of the test credentials, for a ``QueryServer`` started by a test."""
    return StoreAccess(read_token=TEST_STORE_READ_TOKEN, operator_token=TEST_STORE_OPERATOR_TOKEN)


class Role:
    """One production role (``meterline <role>``) as a subprocess with its own log.

    ``name`` tells two processes of one role apart (their logs); ``env`` is added to
    the environment (e.g. each worker's ``METERLINE_KAFKA__GROUP_INSTANCE_ID``).
    """

    def __init__(self, role: str, config: Path, log_dir: Path, *, name: str = "",
                 env: dict[str, str] | None = None) -> None:
        self.role = role
        self.config = config
        self.log_path = log_dir / f"{name or role}.log"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Role:
        env = {"METERLINE_EGRESS__BODY_KEY": TEST_BODY_KEY, **STORE_TOKEN_ENV, **os.environ,
               "METERLINE_CONFIG": str(self.config), **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "meterline.cli.main", "--config", str(self.config),
                 self.role], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 20) -> None:
        if self.process is not None:
            stop_process(self.process, timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Pipeline:
    """Store, processors and gateway as subprocesses on a shared broker.

    ``embedded``: the broker is tansu (``kafka.embedded: true``, the embedded-broker
    policy on) or Apache Kafka (false); see ``tests/backends.py``.
    """

    def __init__(self, workdir: Path, bootstrap: str, simulator_url: str,
                 extra_config: dict[str, Any] | None = None, *, embedded: bool = True) -> None:
        self.workdir = workdir
        self.simulator_url = simulator_url
        self.prefix = unique_prefix("pipe")
        self.bootstrap = bootstrap
        self.gateway_port = free_port()
        self.store_port = free_port()
        self.config = write_config(
            workdir / "meterline.yaml", bootstrap=bootstrap, prefix=self.prefix,
            chdb_path=workdir / "clickhouse", gateway_port=self.gateway_port,
            store_port=self.store_port, demo_upstream=simulator_url, extra=extra_config,
            embedded=embedded)
        self.embedded = embedded
        self.roles = {name: Role(name, self.config, workdir)
                      for name in ("store", "worker", "detector", "gateway")}

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def store_url(self) -> str:
        return f"http://127.0.0.1:{self.store_port}"

    def start(self) -> Pipeline:
        create_topics(self.bootstrap, Topics(self.prefix).all(), partitions=2)
        for role in self.roles.values():
            role.start()
        try:
            wait_for_port("127.0.0.1", self.store_port, 60)
            wait_for_port("127.0.0.1", self.gateway_port, 60)
        except TimeoutError as exc:
            self.stop()
            raise AssertionError(f"pipeline did not start: {exc}\n{self.logs()}") from exc
        return self

    def stop(self) -> None:
        """Gateway first, store last; any extra role (a second worker) with the processors."""
        order = {"gateway": 0, "store": 2}
        for role in sorted(self.roles.values(), key=lambda r: order.get(r.role, 1)):
            role.stop()

    def mint_key(self, user: str, team: str, repo: str = "", *, file: bool = False,
                 env: dict[str, str] | None = None) -> str:
        """A key from ``meterline keys create``: in the registry, or with ``file`` in the
        bootstrap keys file (for a gateway that cannot reach the broker)."""
        args = [sys.executable, "-m", "meterline.cli.main", "--config", str(self.config), "keys",
                "create", "--user", user, "--team", team]
        if repo:
            args += ["--repo", repo]
        if file:
            args.append("--file")
        result = subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                                env={**os.environ, **(env or {})})
        return result.stdout.strip().splitlines()[-1]

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a read-only query through the store's endpoint (tab-separated)."""
        request = urllib.request.Request(f"{self.store_url}/query?format=TabSeparated",
                                         data=query.encode(), method="POST",
                                         headers=auth_headers(TEST_STORE_READ_TOKEN))
        with urllib.request.urlopen(request, timeout=60) as response:
            text: str = response.read().decode()
        return [line.split("\t") for line in text.splitlines()]

    def scalar(self, query: str) -> str:
        rows = self.sql(query)
        return rows[0][0] if rows else ""

    def logs(self) -> str:
        return "\n".join(f"===== {name}\n{role.log()[-4000:]}" for name, role in self.roles.items())

    def logs_full(self) -> str:
        """Every role's whole log, e.g. to show a value never reached any of them."""
        return "\n".join(role.log() for role in self.roles.values())
