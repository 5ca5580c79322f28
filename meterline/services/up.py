"""``meterline up``: the whole pipeline on this machine, supervised.

Starts, in order: the embedded broker (tansu, memory storage) and the topics;
the simulated provider when a provider has no API key; the store (ClickHouse
owner: migrations, sink, query endpoint, scheduler); the processors; the
gateway. Prints where each listens and how to log in to the dashboard, then
supervises (``meterline.embedded.supervisor``): a role that dies is restarted
with backoff while the others, the gateway above all, keep serving.

Start-up is all or nothing: if the store or the gateway does not answer in
time, or a role exits with status 2 (its configuration is unusable: no
restart can help), ``up`` prints that role's log and stops what it started.

Ctrl-C or SIGTERM stops every role within five seconds (``Supervisor.stop``).
Nothing accepted is lost: the gateway spools each envelope before it counts
as emitted, and the next ``up`` replays what the store had not confirmed.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from meterline.embedded import Supervisor, create_topics, free_port, wait_for_port
from meterline.embedded.broker import broker_argv
from meterline.embedded.supervisor import ManagedProcess, role_argv
from meterline.kafka import BrokerError, create_registry_topic
from meterline.schemas import Settings, Topics
from meterline.simulator.drive import SIMULATOR_URL_FILE

log = logging.getLogger(__name__)

#: Exit status of a role whose configuration is unusable (``meterline.cli.main``).
CONFIG_ERROR_EXIT = 2


TextPrinter = Callable[[str], None]


class StartFailed(RuntimeError):
    """A role did not become ready; the message names it and its log."""


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def _broker_address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka.bootstrap_servers.rpartition(":")
    return host or "127.0.0.1", int(port)


def preflight(settings: Settings) -> list[str]:
    """Ports ``up`` needs that something else already holds."""
    wanted = [("store", settings.store.host, settings.store.port),
              ("gateway", settings.gateway.host, settings.gateway.port)]
    if settings.kafka.embedded:
        wanted.append(("broker", *_broker_address(settings)))
    return [f"{name} port {host}:{port} is already in use (is another `meterline up` running?)"
            for name, host, port in wanted if _port_in_use(host, port)]


def _wait_ready(supervisor: Supervisor, role: ManagedProcess, url: str, timeout_s: float) -> None:
    """Block until ``url`` answers, supervising meanwhile (a crashed role is restarted).

    ``StartFailed`` if the role exits with a configuration error or time runs out.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if role.exit_code() == CONFIG_ERROR_EXIT:
            break
        supervisor.check()
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise StartFailed(f"the {role.name} did not start; see {role.log_path}:\n{role.log_tail()}")


@contextmanager
def _stop_requested() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs.

    Both signals are handled explicitly: a shell that starts ``up`` in the
    background makes it ignore SIGINT, and SIGTERM is how service managers stop.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_up(settings: Settings, config_path: str, *, out: TextIO = sys.stdout) -> int:
    problems = preflight(settings)
    if problems:
        for problem in problems:
            print(f"meterline up: {problem}", file=sys.stderr)
        return 2
    data_dir = Path(settings.data_dir)
    log_dir = data_dir / "logs"
    state_path = data_dir / "run" / "roles.json"

    def print_(text: str) -> None:
        print(text, file=out, flush=True)

    supervisor = Supervisor(log_dir, state_path=state_path)
    supervisor.env.update({"METERLINE_CONFIG": config_path,
                           "METERLINE_GATEWAY__ROLES_STATE_FILE": str(state_path.resolve())})
    with _stop_requested() as stop:
        try:
            _start_roles(settings, supervisor, print_)
            print_("ready: press Ctrl-C to stop")
            if stop.is_set():
                return 0
            supervisor.watch(stop)
            return 0
        except StartFailed as exc:
            print(f"meterline up: {exc}", file=sys.stderr)
            return 1
        finally:
            print_("stopping ...")
            started = time.monotonic()
            supervisor.stop()
            print_(f"stopped in {time.monotonic() - started:.1f} s")


def _store_tokens(settings: Settings) -> dict[str, str]:
    """This run's store credentials for its roles, and the 0600 files local CLIs read.

    A token that is not configured is generated afresh on every run, so one
    from an earlier run is refused (docs/security.md). A configured token
    reaches the roles through the environment they inherit; no file is written.
    """
    from pydantic import SecretStr

    from meterline.schemas.store_auth import StoreRole, new_token, write_token_file

    env: dict[str, str] = {}
    roles: tuple[tuple[StoreRole, SecretStr | None], ...] = (
        ("read", settings.store.read_token), ("operator", settings.store.operator_token))
    for role, configured in roles:
        if configured is None:
            token = new_token()
            write_token_file(settings.data_dir, role, token)
            env[f"METERLINE_STORE__{role.upper()}_TOKEN"] = token
    return env


def _start_roles(settings: Settings, supervisor: Supervisor, print_: TextPrinter) -> None:
    topics = Topics(settings.kafka.topic_prefix).all()

    def ensure_topics() -> None:
        create_topics(settings.kafka, topics,
                      partitions=settings.kafka.partitions,
                      replication_factor=settings.kafka.replication_factor)
        create_registry_topic(settings.kafka)

    if settings.kafka.embedded:
        host, port = _broker_address(settings)

        def broker_ready() -> None:
            wait_for_port(host, port, 15)
            ensure_topics()

        try:
            supervisor.start("broker", broker_argv(host, port), after_start=broker_ready)
        except (TimeoutError, BrokerError) as exc:
            raise StartFailed(f"the broker did not start ({exc}); see "
                              f"{supervisor.log_dir / 'broker.log'}") from exc
        print_(f"broker      kafka://{host}:{port} (embedded tansu, memory storage)")
    else:
        ensure_topics()
    if any(p.api_key is None for p in settings.providers.values()) and not settings.demo_upstream:
        sim_port = free_port()
        supervisor.start("simulator", role_argv("simulator", "--port", str(sim_port)),
                         after_start=lambda: wait_for_port("127.0.0.1", sim_port, 15))
        supervisor.env["METERLINE_DEMO_UPSTREAM"] = f"http://127.0.0.1:{sim_port}"
        # `meterline simulate` tells this simulator what a volume run "served" (its reports)
        (Path(settings.data_dir) / SIMULATOR_URL_FILE).write_text(
            f"http://127.0.0.1:{sim_port}\n", encoding="utf-8")
        print_(f"simulator   http://127.0.0.1:{sim_port} (serves providers without API keys)")
    if settings.egress.body_key is None:
        # message text crosses Kafka sealed with this run's key (see policy/seal.py)
        from meterline.policy.seal import new_key
        supervisor.env["METERLINE_EGRESS__BODY_KEY"] = new_key()
    supervisor.env.update(_store_tokens(settings))
    store = supervisor.start("store", role_argv("store"))
    store_url = f"http://{settings.store.host}:{settings.store.port}"
    _wait_ready(supervisor, store, store_url + "/healthz", 60)
    print_(f"store       {store_url} (read-only SQL for `meterline sql`; "
           f"ClickHouse {settings.clickhouse.dsn})")
    if settings.store.read_token is None or settings.store.operator_token is None:
        print_(f"credentials {Path(settings.data_dir) / 'store'}/{{read,operator}}.token "
               "(this run's store tokens, 0600; docs/security.md)")
    supervisor.start("worker", role_argv("worker"))
    print_("processors  worker (a confluent-kafka batch loop): envelopes → priced events")
    if settings.anomalies.enabled or settings.egress.sensitive.mode != "off":
        supervisor.start("detector", role_argv("detector"))
        print_("detectors   faust worker: events → anomalies (Slack via the store), "
               "prompts → sensitive-data scan")
    gateway = supervisor.start("gateway", role_argv("gateway"))
    gateway_url = f"http://{settings.gateway.host}:{settings.gateway.port}"
    _wait_ready(supervisor, gateway, gateway_url + "/healthz", 30)
    print_(f"gateway     {gateway_url}/v1 (OPENAI_BASE_URL / ANTHROPIC_BASE_URL)")
    print_(f"dashboard   {gateway_url}/ui (log in with an admin key: "
           "meterline keys create --admin --user you --team <team>)")
    print_(f"logs        {supervisor.log_dir}/ (a role that dies is restarted; "
           f"{gateway_url}/metrics counts restarts)")
