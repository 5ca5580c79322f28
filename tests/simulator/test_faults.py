"""The simulated provider's fault windows: ``/sim/faults`` fails matching calls, unbilled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from meterline.simulator import create_provider_app
from meterline.simulator.served import ServedBook
from tests.harness import wait_until

ANTHROPIC = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def book() -> ServedBook:
    return ServedBook()


@pytest.fixture
def client(book: ServedBook) -> Iterator[TestClient]:
    with TestClient(create_provider_app(served=book)) as test_client:
        yield test_client


def message(client: TestClient, model: str) -> tuple[int, dict[str, object]]:
    answer = client.post("/v1/messages", headers=ANTHROPIC, json={
        "model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    return answer.status_code, answer.json()


def chat(client: TestClient, model: str) -> tuple[int, dict[str, object], str | None]:
    answer = client.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "hi"}]})
    return answer.status_code, answer.json(), answer.headers.get("retry-after")


def billed_requests(book: ServedBook, kind: str) -> int:
    return sum(tally.requests for _, groups in book.buckets(kind, 0, 1 << 40, 1 << 40)
               for tally in groups.values())


def test_a_fault_fails_the_named_models_in_the_providers_format(
        client: TestClient, book: ServedBook) -> None:
    created = client.post("/sim/faults", json={"status": 529, "seconds": 60,
                                                "models": ["claude-sonnet-4-5"]})
    assert created.status_code == 201 and created.json()["models"] == ["claude-sonnet-4-5"]
    status, body = message(client, "claude-sonnet-4-5")
    assert status == 529
    assert body == {"type": "error", "error": {"type": "overloaded_error",
                                               "message": "Simulated overloaded_error (529)."}}
    assert message(client, "claude-haiku-4-5")[0] == 200  # another model is served
    assert billed_requests(book, "anthropic") == 1  # the failed call is not billed
    listed = client.get("/sim/faults").json()["faults"]
    assert [(f["status"], f["answered"]) for f in listed] == [(529, 1)]
    assert client.delete("/sim/faults").status_code == 204
    assert message(client, "claude-sonnet-4-5")[0] == 200
    assert client.get("/sim/faults").json() == {"faults": []}


def test_a_fault_without_models_fails_every_call_until_its_window_ends(
        client: TestClient) -> None:
    assert client.post("/sim/faults", json={"status": 429, "seconds": 0.5}).status_code == 201
    status, body, retry_after = chat(client, "gpt-4o-mini")
    assert (status, retry_after) == (429, "1")
    assert body["error"] == {"message": "Simulated rate_limit_exceeded (429).",
                             "type": "rate_limit_exceeded", "param": None,
                             "code": "rate_limit_exceeded"}
    assert message(client, "claude-opus-4-1")[0] == 429
    wait_until(lambda: chat(client, "gpt-4o-mini")[0] == 200, 10, interval_s=0.1,
               message="the window's end")
    assert client.get("/sim/faults").json() == {"faults": []}


@pytest.mark.parametrize(("body", "problem"), [
    ({"status": 200, "seconds": 5}, "status: must be an error status"),
    ({"status": 503}, "seconds: must be a number"),
    ({"status": 503, "seconds": True}, "seconds: must be a number"),
    ({"status": 503, "seconds": 5, "models": "gpt-4o"}, "models: must be a list"),
    ({"status": 503, "seconds": 5, "model": ["x"]}, "unknown field(s) model"),
])
def test_a_bad_fault_is_refused_naming_the_field(client: TestClient, body: dict[str, object],
                                                 problem: str) -> None:
    answer = client.post("/sim/faults", json=body)
    assert answer.status_code == 400 and problem in answer.json()["error"]["message"]
    assert client.get("/sim/faults").json() == {"faults": []}
