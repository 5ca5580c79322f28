"""Issue 5's bar: SIGKILL the worker (and the store) mid-stream, repeatedly, while calls flow.

Afterwards every call the gateway served is one event, and every rollup's
Σ requests and Σ cost equal those over the distinct events, to 1e-9.

Part of the contract suite: on the embedded tansu broker and on Apache Kafka
(``backend``, tests/backends.py). Each restart's time to the next stored row is
printed, not asserted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from meterline.sinks import remote_job
from tests.backends import Backend
from tests.harness import TEST_STORE_OPERATOR_TOKEN, CallerThreads, Pipeline, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

CALLS = [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "What did we spend on tokens this week?"}]}),
    ("/v1/chat/completions", {"model": "gpt-5", "stream": True,
                              "stream_options": {"include_usage": True},
                              "messages": [{"role": "user", "content": "Stream a summary."}]}),
    ("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 200, "messages": [
        {"role": "user", "content": "Explain the bill, briefly."}]}),
]


class Traffic(CallerThreads):
    """Threads sending calls through the gateway until stopped; records what was served."""

    def __init__(self, gateway_url: str, key: str, threads: int = 3) -> None:
        super().__init__(threads, join_timeout_s=30)
        self._url = gateway_url
        self._key = key
        self._lock = threading.Lock()
        self.served: set[str] = set()
        self.failures = 0

    def call_until_stopped(self, index: int) -> None:
        headers = {"authorization": f"Bearer {self._key}", "x-api-key": self._key,
                   "anthropic-version": "2023-06-01"}
        with httpx.Client(base_url=self._url, headers=headers, timeout=30) as client:
            n = index
            while not self.stopping:
                path, body = CALLS[n % len(CALLS)]
                n += 1
                response = client.post(path, json=body)
                response.read()
                request_id = response.headers.get("x-meterline-request-id")
                with self._lock:
                    if response.status_code == 200 and request_id:
                        self.served.add(request_id)
                    else:
                        self.failures += 1

    def count(self) -> int:
        with self._lock:
            return len(self.served)


@pytest.fixture
def pipeline_under_chaos(tmp_path: Path, backend: Backend, simulator: str
                         ) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, backend.bootstrap_servers, simulator,
                       embedded=backend.embedded).start()
    yield running
    running.stop()


def stored(pipeline: Pipeline) -> int:
    """Distinct request ids stored; 0 while the store restarts."""
    try:
        return int(pipeline.scalar("SELECT uniqExact(request_id) FROM events") or 0)
    except OSError:
        return 0


def test_sigkilled_worker_and_store_count_every_served_call_once(
        pipeline_under_chaos: Pipeline) -> None:
    pipeline = pipeline_under_chaos
    key = pipeline.mint_key("alice", "platform", repo="acme/api")
    worker, store = pipeline.roles["worker"], pipeline.roles["store"]
    recovered_s: list[float] = []
    with Traffic(pipeline.gateway_url, key) as traffic:
        wait_until(lambda: stored(pipeline) > 0, 120, 0.5, message="first rows stored")
        for round_ in range(4):
            seen = stored(pipeline)
            wait_until(lambda: stored(pipeline) > seen, 120, 0.3,  # noqa: B023 (seen is fresh)
                       message=f"progress before kill {round_}")
            worker.kill()  # SIGKILL, mid-stream: no shutdown code runs
            if round_ == 2:
                store.kill()  # the sink too, between any insert and any commit
                store.start()
            time.sleep(1.0)
            worker.start()
            # recovered: every call served up to the restart is stored (the backlog is drained)
            restarted_at, backlog = time.monotonic(), traffic.count()
            wait_until(lambda: stored(pipeline) >= backlog, 120, 0.2,  # noqa: B023 (fresh)
                       message=f"backlog stored after restart {round_}")
            recovered_s.append(time.monotonic() - restarted_at)
    served = traffic.served
    assert len(served) > 100, f"too little traffic to prove anything ({len(served)})"
    wait_until(lambda: stored(pipeline) >= len(served), 240, 1.0,
               message=f"all {len(served)} served calls stored")

    ids = {row[0] for row in pipeline.sql("SELECT request_id FROM events")}
    assert ids == served
    books = remote_job(pipeline.store_url, "reconcile", {}, token=TEST_STORE_OPERATOR_TOKEN)
    assert books["distinct_request_ids"] == len(served)
    assert books["event_rows"] == len(served)
    events_cost = Decimal(books["events_cost_usd"])
    assert events_cost > 0
    for name, totals in books["rollups"].items():
        assert totals["requests"] == len(served), name
        assert abs(Decimal(totals["cost_usd"]) - events_cost) <= Decimal("1e-9"), name
    assert books["balanced"]
    broker = "tansu" if pipeline.embedded else "kafka"
    print(f"\nexactly once on {broker}: {len(served)} calls; backlog stored "
          f"{', '.join(f'{s:.1f}' for s in recovered_s)}s after each worker restart "
          "(the third with the store SIGKILLed too)")
