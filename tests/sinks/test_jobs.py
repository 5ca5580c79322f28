"""The store's job endpoint: POST /jobs/<name> runs a registered job in the store process."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest

from meterline.embedded import free_port
from meterline.sinks import (
    JobArgumentError,
    JobError,
    JobRegistry,
    QueryServer,
    StoreNotRunning,
    UnknownJob,
    remote_job,
)
from tests.harness import TEST_STORE_OPERATOR_TOKEN as OPERATOR
from tests.harness import store_access

pytestmark = pytest.mark.store


def add(args: Mapping[str, Any]) -> Mapping[str, Any]:
    if "a" not in args or "b" not in args:
        raise JobArgumentError("'a' and 'b' are required")
    return {"sum": Decimal(str(args["a"])) + Decimal(str(args["b"]))}


def broken(args: Mapping[str, Any]) -> Mapping[str, Any]:
    raise RuntimeError("disk on fire")


@pytest.fixture
def store(clickhouse: tuple[Any, str]) -> Iterator[str]:
    jobs = JobRegistry()
    jobs.register("add", add)
    jobs.register("broken", broken)
    server = QueryServer(clickhouse[0], "127.0.0.1", free_port(), jobs=jobs, access=store_access())
    server.start()
    yield server.url
    server.stop()


def test_a_registered_job_runs_and_answers_json(store: str) -> None:
    assert remote_job(store, "add", {"a": "0.1", "b": "0.2"}, token=OPERATOR) == {"sum": "0.3"}


def test_errors_keep_their_kind_across_http(store: str) -> None:
    with pytest.raises(UnknownJob, match="registered: add, broken"):
        remote_job(store, "nope", {}, token=OPERATOR)
    with pytest.raises(JobArgumentError, match="'a' and 'b' are required"):
        remote_job(store, "add", {"a": 1}, token=OPERATOR)
    with pytest.raises(JobError, match="RuntimeError: disk on fire"):
        remote_job(store, "broken", {}, token=OPERATOR)


def test_no_store_is_reported_as_such() -> None:
    with pytest.raises(StoreNotRunning):
        remote_job(f"http://127.0.0.1:{free_port()}", "add", {}, timeout_s=2, token=OPERATOR)


def test_a_name_registers_once() -> None:
    jobs = JobRegistry()
    jobs.register("x", add)
    with pytest.raises(ValueError, match="already registered"):
        jobs.register("x", add)
