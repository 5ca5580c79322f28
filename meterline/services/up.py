"""``meterline up``: the whole pipeline on this machine.

Starts, in order: the embedded broker (tansu, memory storage) and the topics;
the simulated provider when a provider has no API key; the store (ClickHouse
owner: migrations, sink, query endpoint, scheduler); the processors; the
gateway. Prints where each listens, then waits. Ctrl-C (or any role exiting)
stops everything in reverse order.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import TextIO

from meterline.embedded import EmbeddedBroker, Supervisor, create_topics, free_port, wait_for_port
from meterline.embedded.supervisor import role_argv
from meterline.schemas import Settings, Topics

log = logging.getLogger(__name__)


def _wait_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def preflight(settings: Settings) -> list[str]:
    """Ports ``up`` needs that something else already holds."""
    wanted = [("store", settings.store.host, settings.store.port),
              ("gateway", settings.gateway.host, settings.gateway.port)]
    if settings.kafka.embedded:
        host, _, port = settings.kafka.bootstrap_servers.rpartition(":")
        wanted.append(("broker", host or "127.0.0.1", int(port)))
    return [f"{name} port {host}:{port} is already in use (is another `meterline up` running?)"
            for name, host, port in wanted if _port_in_use(host, port)]


def run_up(settings: Settings, config_path: str, *, out: TextIO = sys.stdout) -> int:
    problems = preflight(settings)
    if problems:
        for problem in problems:
            print(f"meterline up: {problem}", file=sys.stderr)
        return 2
    data_dir = Path(settings.data_dir)
    log_dir = data_dir / "logs"

    def print_(text: str) -> None:
        print(text, file=out, flush=True)

    broker = None
    env: dict[str, str] = {"METERLINE_CONFIG": config_path}
    if settings.kafka.embedded:
        host, _, port = settings.kafka.bootstrap_servers.rpartition(":")
        broker = EmbeddedBroker(host=host or "127.0.0.1", port=int(port),
                                log_path=log_dir / "broker.log")
        log_dir.mkdir(parents=True, exist_ok=True)
        broker.start()
        print_(f"broker      kafka://{broker.bootstrap_servers} (embedded tansu, memory storage)")
    create_topics(settings.kafka.bootstrap_servers, Topics(settings.kafka.topic_prefix).all(),
                  partitions=settings.kafka.partitions,
                  replication_factor=settings.kafka.replication_factor)
    supervisor = Supervisor(log_dir)
    try:
        if any(p.api_key is None for p in settings.providers.values()) and not settings.demo_upstream:
            sim_port = free_port()
            supervisor.start("simulator", role_argv("simulator", "--port", str(sim_port)))
            wait_for_port("127.0.0.1", sim_port, 15)
            env["METERLINE_DEMO_UPSTREAM"] = f"http://127.0.0.1:{sim_port}"
            print_(f"simulator   http://127.0.0.1:{sim_port} (serves providers without API keys)")
        if settings.egress.body_key is None:
            # message text crosses Kafka sealed with this run's key (see policy/seal.py)
            from meterline.policy.seal import new_key
            env["METERLINE_EGRESS__BODY_KEY"] = new_key()
        supervisor.env.update(env)
        supervisor.start("store", role_argv("store"))
        store_url = f"http://{settings.store.host}:{settings.store.port}"
        if not _wait_http(store_url + "/healthz", 60):
            raise RuntimeError("the store did not start; see " + str(log_dir / "store.log"))
        clickhouse = settings.clickhouse.dsn
        print_(f"store       {store_url} (read-only SQL for `meterline sql`; ClickHouse {clickhouse})")
        supervisor.start("worker", role_argv("worker"))
        print_("processors  faust worker: envelopes → priced events")
        if settings.anomalies.enabled or settings.egress.sensitive.mode != "off":
            supervisor.start("detector", role_argv("detector"))
            print_("detectors   faust worker: events → anomalies (Slack via the store), "
                   "prompts → sensitive-data scan")
        supervisor.start("gateway", role_argv("gateway"))
        gateway_url = f"http://{settings.gateway.host}:{settings.gateway.port}"
        if not _wait_http(gateway_url + "/healthz", 30):
            raise RuntimeError("the gateway did not start; see " + str(log_dir / "gateway.log"))
        print_(f"gateway     {gateway_url}/v1 (OPENAI_BASE_URL / ANTHROPIC_BASE_URL)")
        print_(f"logs        {log_dir}/")
        print_("ready: press Ctrl-C to stop")
        exited = supervisor.wait()
        if exited is not None:
            print_(f"{exited.name} exited with code {exited.exit_code()}:\n{exited.log_tail()}")
            return 1
        return 0
    finally:
        print_("stopping ...")
        supervisor.stop()
        if broker is not None:
            broker.stop()
        print_("stopped")
