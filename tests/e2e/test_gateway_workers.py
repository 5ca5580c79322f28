"""Several gateway processes on one port (``gateway.workers: 2``), each with its own spool.

On real parts: the session's tansu, chdb in the store, the simulated provider.

- Eight clients, each call on a new connection, reach both children: every
  served request id is in exactly one child's spool (read with the spool's
  own format, ``ingest.segment``), and each spool holds some.
- Under that load one child is SIGKILLed. The other keeps serving; calls whose
  connection the kill broke are retried by their client and counted; the
  parent starts the child again on its spool, and it serves again. Afterwards
  every call answered 200 is one row in ``events``, matched by its
  ``x-meterline-request-id``: none missing, none twice.
- A second ``meterline gateway`` on a spool in use, on the port in use, or with
  a worker count that would strand spooled envelopes exits at once with status
  2 and says why; a child that cannot start stops the gateway with status 1.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from meterline.embedded import free_port
from meterline.ingest import segment
from meterline.sinks import remote_job
from tests.e2e.test_durability import CALLS, DRAIN_TIMEOUT_S, REQUEST_ID_HEADER, answered_correctly
from tests.harness import (
    REPO_ROOT,
    TEST_BODY_KEY,
    TEST_STORE_OPERATOR_TOKEN,
    CallerThreads,
    Pipeline,
    Role,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.store]

CLIENTS = 8
WARM_UP_CALLS = 200
#: Calls the surviving child must serve after the kill, and the restarted child after its restart.
CALLS_AFTER_KILL = 200
CALLS_AFTER_RESTART = 20
#: No segment closes by age during the test, so a spool still holds what it took.
TWO_CHILDREN = {"gateway": {"workers": 2, "spool_segment_max_age_s": 600}}
STARTED = re.compile(r"gateway worker (\d+) started \(pid (\d+),")
RECOVERED = re.compile(r"worker-1: recovered (\d+) outstanding envelopes")


class NewConnections(CallerThreads):
    """``CLIENTS`` callers; every call opens a new connection, so the kernel picks a child for
    each. A call whose connection broke is counted in ``broken`` and made again."""

    def __init__(self, gateway_url: str, key: str) -> None:
        super().__init__(CLIENTS, join_timeout_s=60)
        self._url = gateway_url
        self._headers = {"authorization": f"Bearer {key}", "x-api-key": key,
                         "anthropic-version": "2023-06-01"}
        self._lock = threading.Lock()
        self.served: dict[str, tuple[str, str]] = {}
        self.broken: list[str] = []
        self.bad: list[str] = []

    def served_ids(self) -> set[str]:
        with self._lock:
            return set(self.served)

    def call_until_stopped(self, index: int) -> None:
        with httpx.Client(base_url=self._url, headers=self._headers, timeout=60,
                          limits=httpx.Limits(max_keepalive_connections=0)) as http:
            n = index
            while not self.stopping:
                if self._call(http, n):
                    n += CLIENTS

    def _call(self, http: httpx.Client, n: int) -> bool:
        """One attempt at call ``n``; False when its connection broke (it is made again)."""
        path, body, kind = CALLS[n % len(CALLS)]
        try:
            response = http.post(path, json=body)
        except httpx.TransportError as exc:
            with self._lock:
                self.broken.append(f"{path}: {exc!r}")
            return False
        with self._lock:
            if answered_correctly(path, body, response):
                self.served[response.headers[REQUEST_ID_HEADER]] = kind
            else:
                self.bad.append(f"{path}: {response.status_code} {response.text[:200]}")
        return True


def spooled_ids(spool: Path) -> set[str]:
    """The request ids in a spool directory's segments."""
    ids: set[str] = set()
    for path in spool.glob(f"*{segment.SUFFIX}"):
        first_seq = segment.parse_segment_name(path.name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # released meanwhile: confirmed and closed
            continue
        assert first_seq is not None, path
        ids |= {str(uuid.UUID(bytes=r.request_id)) for r in segment.scan(data, first_seq).records}
    return ids


def child_pids(gateway: Role) -> dict[int, int]:
    """Each child's pid, as the parent last logged it."""
    return {int(index): int(pid) for index, pid in STARTED.findall(gateway.log())}


def calls_per_child(spools: list[Path], ids: set[str]) -> list[set[str]] | None:
    """``ids`` split by the spool holding each; None while some are not spooled yet
    (an envelope is spooled just after its response)."""
    held = [spooled_ids(spool) & ids for spool in spools]
    return held if set().union(*held) == ids else None


def stored_ids(pipeline: Pipeline) -> collections.Counter[str]:
    """Rows per request id in ``events``; empty while the store cannot answer."""
    try:
        return collections.Counter(row[0] for row in pipeline.sql("SELECT request_id FROM events"))
    except OSError:
        return collections.Counter()


@pytest.fixture
def two_children(tmp_path: Path, broker: str, simulator: str) -> Iterator[Pipeline]:
    pipeline = Pipeline(tmp_path, broker, simulator, extra_config=TWO_CHILDREN)
    yield pipeline.start()
    pipeline.stop()


def both_started(gateway: Role) -> dict[int, int]:
    wait_until(lambda: len(child_pids(gateway)) == 2, 30, message="both children started")
    return child_pids(gateway)


def test_two_children_serve_one_port_and_a_killed_one_is_restarted_losing_nothing(
        two_children: Pipeline, tmp_path: Path) -> None:
    pipeline, gateway = two_children, two_children.roles["gateway"]
    spools = [tmp_path / "spool" / f"worker-{i}" for i in range(2)]
    pids = both_started(gateway)
    key = pipeline.mint_key("alice", "platform", repo="acme/api")
    with NewConnections(pipeline.gateway_url, key) as traffic:
        wait_until(lambda: len(traffic.served_ids()) >= WARM_UP_CALLS, 120, 0.2,
                   message="calls served before the kill")
        warm = traffic.served_ids()
        per_child = wait_until(lambda: calls_per_child(spools, warm), 30, 0.2,
                               message="every call served so far in a spool")
        assert not per_child[0] & per_child[1], "a call spooled by both children"
        assert per_child[0] and per_child[1], "one child served every call"

        broken_before_kill, before_kill = len(traffic.broken), traffic.served_ids()
        os.kill(pids[1], signal.SIGKILL)
        killed_child_held = spooled_ids(spools[1])  # before its successor releases any of it
        wait_until(lambda: child_pids(gateway)[1] != pids[1], 30, 0.1,
                   message="child 1 started again")
        while_down = len(traffic.served_ids() - before_kill)
        wait_until(lambda: len(traffic.served_ids() - before_kill) >= CALLS_AFTER_KILL, 60, 0.2,
                   message="calls served after the kill")
        # the new child 1 serves, and spools to worker-1 again
        wait_until(lambda: len(spooled_ids(spools[1]) & (traffic.served_ids() - before_kill))
                   >= CALLS_AFTER_RESTART, 60, 0.2, message="the restarted child serving")
    after_kill = set(traffic.served) - before_kill
    by_survivor = spooled_ids(spools[0]) & after_kill
    by_successor = spooled_ids(spools[1]) & after_kill - killed_child_held

    assert traffic.bad == [], traffic.bad[:5]
    assert broken_before_kill == 0, traffic.broken[:5]
    assert by_survivor, "the surviving child stopped serving"
    served = set(traffic.served)
    wait_until(lambda: not served - stored_ids(pipeline).keys(), DRAIN_TIMEOUT_S, 1.0,
               message=f"all {len(served)} served calls stored")
    rows = stored_ids(pipeline)
    assert [i for i, count in rows.items() if count > 1] == [], "a request id stored twice"
    unanswered = rows.keys() - served
    # a row no client saw answered: only a call whose connection the kill broke
    assert len(unanswered) <= len(traffic.broken), sorted(unanswered)[:5]
    books = remote_job(pipeline.store_url, "reconcile", {}, token=TEST_STORE_OPERATOR_TOKEN)
    assert books["event_rows"] == books["distinct_request_ids"] == len(rows)
    assert books["balanced"], books
    recovered = ", ".join(RECOVERED.findall(gateway.log())) or "no"
    print(f"\ngateway --workers 2, {CLIENTS} clients on new connections: before the kill "
          f"{len(per_child[0])} calls by child 0, {len(per_child[1])} by child 1; "
          f"{len(traffic.broken)} connections broken by the SIGKILL of child 1 (each retried); "
          f"{while_down} calls served from the kill until the parent logged the restart; after "
          f"the kill {len(by_survivor)} by child 0, {len(by_successor)} by the "
          f"restarted child 1, which recovered {recovered or 'no'} outstanding envelopes from "
          f"its spool; {len(served)} calls answered 200, each one row; {len(unanswered)} rows "
          "for calls whose answer the kill cut off")


def meterline_gateway(config: Path, *args: str, env: dict[str, str] | None = None
                      ) -> subprocess.CompletedProcess[str]:
    """``meterline gateway ARGS`` to its end (60 s at most)."""
    return subprocess.run(
        [sys.executable, "-m", "meterline.cli.main", "--config", str(config), "gateway", *args],
        env={**os.environ, "METERLINE_EGRESS__BODY_KEY": TEST_BODY_KEY, **(env or {})},
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def test_a_second_gateway_on_a_spool_or_port_in_use_fails_fast(
        two_children: Pipeline, tmp_path: Path) -> None:
    config, spool = two_children.config, tmp_path / "spool"
    both_started(two_children.roles["gateway"])
    other_port = {"METERLINE_GATEWAY__PORT": str(free_port())}
    refusals = {
        "same config, another port": (meterline_gateway(config, "--workers", "2", env=other_port),
                                      f"spool {spool}/worker-"),
        "one process on child 0's spool": (
            meterline_gateway(config, "--workers", "1",
                              env={**other_port, "METERLINE_GATEWAY__SPOOL_DIR": f"{spool}/worker-0"}),
            f"spool {spool}/worker-0 is in use by another process"),
        "same config, same port": (meterline_gateway(config, "--workers", "2"),
                                   f"port 127.0.0.1:{two_children.gateway_port} is in use"),
    }
    for case, (result, reason) in refusals.items():
        assert result.returncode == 2, (case, result.stderr[-2000:])
        assert reason in result.stderr, (case, result.stderr[-2000:])
    assert "is in use by another process" in refusals["same config, another port"][0].stderr
    assert two_children.roles["gateway"].alive()


def test_scaling_down_with_envelopes_in_a_spool_is_refused(tmp_path: Path) -> None:
    """The spool of a child that a smaller count drops would never be replayed: refused."""
    config = write_config(tmp_path / "meterline.yaml", bootstrap=f"127.0.0.1:{free_port()}",
                          prefix="scale-down", chdb_path=tmp_path / "clickhouse",
                          gateway_port=free_port(), store_port=free_port(),
                          demo_upstream="http://127.0.0.1:9")
    stranded = tmp_path / "spool" / "worker-2"
    stranded.mkdir(parents=True)
    (stranded / segment.segment_name(1)).write_bytes(segment.encode(1, uuid.uuid4().bytes, b"{}"))
    result = meterline_gateway(config, "--workers", "2")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{stranded} hold envelopes that a gateway with 2 worker(s) would never replay" \
        in result.stderr


def test_a_child_that_cannot_start_stops_the_gateway(tmp_path: Path) -> None:
    """Its spool cannot be created (``spool_dir`` is a file): restarted, then given up on."""
    not_a_dir = tmp_path / "spool"
    not_a_dir.write_text("")
    config = write_config(tmp_path / "meterline.yaml", bootstrap=f"127.0.0.1:{free_port()}",
                          prefix="no-start", chdb_path=tmp_path / "clickhouse",
                          gateway_port=free_port(), store_port=free_port(),
                          demo_upstream="http://127.0.0.1:9")
    result = meterline_gateway(config, "--workers", "2")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "exited 5 times in a row" in result.stderr
    assert "restarting it in 4.0 s" in result.stderr  # the back-off doubled each time
