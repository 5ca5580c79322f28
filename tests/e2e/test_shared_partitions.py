"""Issue 17's contract: two workers share the envelopes' partitions; one is SIGKILLed mid-traffic.

Two ``meterline worker`` processes with the same config (compose's two replicas)
join one consumer group and split the two partitions. While calls flow, one is
SIGKILLed and not restarted: the survivor must take over the dead one's
partition, and afterwards every served call is one event and the books balance,
as in ``test_exactly_once``. On both brokers (``backend``, tests/backends.py): on
Apache Kafka the workers are static members, each with its own
``kafka.group_instance_id`` (two processes of one role on one host), so the dead
member's partition moves only when its session (6 s) lapses. The time from the
kill until every call served before it is stored is printed, not asserted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterline.sinks import remote_job
from tests.backends import Backend
from tests.e2e.test_exactly_once import Traffic, stored
from tests.harness import TEST_STORE_OPERATOR_TOKEN, Pipeline, Role, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

ASSIGNED = re.compile(r"enrich assigned (.*)$", re.MULTILINE)


@pytest.fixture
def two_workers(tmp_path: Path, backend: Backend, simulator: str) -> Iterator[Pipeline]:
    pipeline = Pipeline(tmp_path, backend.bootstrap_servers, simulator,
                        embedded=backend.embedded)
    pipeline.roles["worker"] = Role("worker", pipeline.config, tmp_path, name="worker-1",
                                    env={"METERLINE_KAFKA__GROUP_INSTANCE_ID": "worker-1"})
    pipeline.roles["worker-2"] = Role("worker", pipeline.config, tmp_path, name="worker-2",
                                      env={"METERLINE_KAFKA__GROUP_INSTANCE_ID": "worker-2"})
    yield pipeline.start()
    pipeline.stop()


def assignment(worker: Role) -> str:
    """The worker's latest assignment as it logged it ('' before the first)."""
    found = ASSIGNED.findall(worker.log())
    return str(found[-1]) if found else ""


def test_two_workers_share_partitions_and_one_dies_mid_traffic(two_workers: Pipeline) -> None:
    pipeline = two_workers
    first, second = pipeline.roles["worker"], pipeline.roles["worker-2"]
    key = pipeline.mint_key("alice", "platform", repo="acme/api")
    with Traffic(pipeline.gateway_url, key) as traffic:
        wait_until(lambda: stored(pipeline) > 0, 120, 0.5, message="first rows stored")
        # each worker holds one of the two partitions (a split, not one idle standby)
        wait_until(lambda: all(assignment(w) and "," not in assignment(w)
                               for w in (first, second)), 120, 0.5,
                   message="the two partitions split between the workers")
        seen = stored(pipeline)
        wait_until(lambda: stored(pipeline) > seen + 50, 60, 0.2, message="both workers busy")

        second.kill()  # SIGKILL: no leave-group, no commit of its last batch
        killed_at, backlog = time.monotonic(), traffic.count()
        # the dead worker may have produced the events of its last batches before the kill,
        # so the rows alone do not show the take-over: its log does
        wait_until(lambda: "," in assignment(first), 120, 0.2,
                   message="the survivor took both partitions")
        wait_until(lambda: stored(pipeline) >= backlog, 120, 0.2,
                   message="every call served before the kill stored by the survivor")
        recovered_s = time.monotonic() - killed_at
        seen = stored(pipeline)
        wait_until(lambda: stored(pipeline) > seen + 50, 60, 0.2,
                   message="progress after the take-over")
    served = traffic.served
    assert first.alive() and not second.alive()
    wait_until(lambda: stored(pipeline) >= len(served), 120, 0.5,
               message=f"all {len(served)} served calls stored")

    ids = {row[0] for row in pipeline.sql("SELECT request_id FROM events")}
    assert ids == served
    books = remote_job(pipeline.store_url, "reconcile", {}, token=TEST_STORE_OPERATOR_TOKEN)
    assert books["distinct_request_ids"] == books["event_rows"] == len(served)
    assert books["balanced"], books
    broker = "tansu" if pipeline.embedded else "kafka"
    print(f"\ntwo workers on {broker}: {len(served)} calls; one SIGKILLed, every call served "
          f"before it stored {recovered_s:.1f}s later by the survivor")
