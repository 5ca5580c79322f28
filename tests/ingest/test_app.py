"""Bad input at the gateway: each refusal in its API's own format, counted, never fatal."""

from __future__ import annotations

import socket

import httpx
import pytest

from meterline.ingest import create_app
from meterline.schemas import Settings
from tests.harness import ThreadedServer
from tests.ingest.gateway_harness import (
    ALICE_KEY,
    PROVIDER_KEY,
    REQUEST_ID,
    GatewayUnderTest,
    KeyedUpstream,
    key_record,
)

pytestmark = pytest.mark.store

OPENAI = {"authorization": f"Bearer {ALICE_KEY}"}
ANTHROPIC = {"x-api-key": ALICE_KEY, "anthropic-version": "2023-06-01"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 20,
           "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(response: httpx.Response, status: int, fragment: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, str] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert fragment in error["message"]
    return error


def assert_anthropic_error(response: httpx.Response, status: int, kind: str, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert fragment in body["error"]["message"]


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"model": "gpt-4o-mini", "messages": [', "could not parse the JSON body"),
    (b"[1, 2]", "must be a JSON object"),
    (b"", "body is empty"),
    (b'{"messages": []}', "you must provide a model parameter"),
])
def test_malformed_bodies_get_openai_400(gateway: GatewayUnderTest, body: bytes,
                                         fragment: str) -> None:
    before = gateway.metric("meterline_gateway_errors_total", 'error="BadRequest"')
    response = httpx.post(gateway.url + "/v1/chat/completions", content=body,
                          headers={**OPENAI, "content-type": "application/json"})
    error = assert_openai_error(response, 400, fragment)
    assert error["type"] == "invalid_request_error"
    assert gateway.metric("meterline_gateway_errors_total", 'error="BadRequest"') == before + 1
    # an authenticated refusal still leaves an envelope, marked as the gateway's doing
    envelope = gateway.envelopes.get(response.headers[REQUEST_ID])
    assert (envelope.outcome, envelope.error_class, envelope.status) == (
        "gateway_error", "BadRequest", 400)
    assert (envelope.user, envelope.team, envelope.usage.source) == ("alice", "platform", "missing")


def test_malformed_body_on_anthropic_path_gets_anthropic_error(gateway: GatewayUnderTest) -> None:
    response = httpx.post(gateway.url + "/v1/messages", content=b"{oops",
                          headers={**ANTHROPIC, "content-type": "application/json"})
    assert_anthropic_error(response, 400, "invalid_request_error", "could not parse the JSON")


def test_missing_and_invalid_keys_in_each_format(gateway: GatewayUnderTest) -> None:
    before = gateway.metric("meterline_gateway_errors_total", 'error="Unauthenticated"')
    missing = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT)
    error = assert_openai_error(missing, 401, "Missing API key")
    assert error["code"] == "invalid_api_key"
    wrong = httpx.post(gateway.url + "/v1/embeddings", json={"model": "e", "input": "x"},
                       headers={"authorization": "Bearer ml-nope"})
    assert_openai_error(wrong, 401, "Incorrect API key")
    anthropic = httpx.post(gateway.url + "/v1/messages", json=MESSAGE,
                           headers={"x-api-key": "ml-nope", "anthropic-version": "2023-06-01"})
    assert_anthropic_error(anthropic, 401, "authentication_error", "Incorrect API key")
    assert "ml-nope" not in anthropic.text
    assert gateway.metric("meterline_gateway_errors_total", 'error="Unauthenticated"') == before + 3


def test_oversize_bodies_refused_declared_or_chunked(gateway: GatewayUnderTest) -> None:
    limit = gateway.settings.gateway.max_body_bytes
    big = b'{"model": "gpt-4o-mini", "pad": "' + b"x" * limit + b'"}'
    declared = httpx.post(gateway.url + "/v1/chat/completions", content=big,
                          headers={**OPENAI, "content-type": "application/json"})
    assert_openai_error(declared, 413, f"exceeds the gateway limit of {limit} bytes")

    def chunks() -> object:
        for start in range(0, len(big), 1 << 20):
            yield big[start:start + (1 << 20)]

    chunked = httpx.post(gateway.url + "/v1/messages", content=chunks(),  # type: ignore[arg-type]
                         headers={**ANTHROPIC, "content-type": "application/json"})
    assert_anthropic_error(chunked, 413, "request_too_large", "exceeds the gateway limit")
    assert gateway.metric("meterline_gateway_errors_total", 'error="BodyTooLarge"') >= 2


def test_unsupported_path_and_method(gateway: GatewayUnderTest) -> None:
    path = httpx.post(gateway.url + "/v1/completions", json=CHAT, headers=OPENAI)
    error = assert_openai_error(path, 404, "Unsupported path: POST /v1/completions")
    assert error["code"] == "not_found"
    anthropic_path = httpx.post(gateway.url + "/v1/messages/batches", json={}, headers=ANTHROPIC)
    assert_anthropic_error(anthropic_path, 404, "not_found_error", "Unsupported path")
    method = httpx.get(gateway.url + "/v1/chat/completions", headers=OPENAI)
    assert_openai_error(method, 405, "use POST")
    assert gateway.metric("meterline_gateway_errors_total", 'error="NotFound"') >= 2
    assert gateway.metric("meterline_gateway_errors_total", 'error="MethodNotAllowed"') >= 1


def test_unknown_model_refused_when_unlisted_models_are_off(
        tmp_path_factory: pytest.TempPathFactory, broker: str,
        keyed_simulator: KeyedUpstream) -> None:
    strict = GatewayUnderTest(tmp_path_factory.mktemp("strict"), broker, keyed_simulator.url,
                              allow_unlisted_models=False)
    try:
        refused = httpx.post(strict.url + "/v1/chat/completions", json=CHAT, headers=OPENAI)
        error = assert_openai_error(refused, 404, "The model 'gpt-4o-mini' does not exist")
        assert error["code"] == "model_not_found" and error["param"] == "model"
        assert "fast" in error["message"]  # the message lists what may be called
        anthropic = httpx.post(strict.url + "/v1/messages", json=MESSAGE, headers=ANTHROPIC)
        assert_anthropic_error(anthropic, 404, "not_found_error", "claude-sonnet-4-5")
        aliased = httpx.post(strict.url + "/v1/messages", json={**MESSAGE, "model": "fast"},
                             headers=ANTHROPIC)
        assert aliased.status_code == 200
        assert aliased.json()["model"] == "claude-haiku-4-5"
        assert strict.metric("meterline_gateway_errors_total", 'error="UnknownModel"') == 2
    finally:
        strict.stop()


def test_worker_survives_and_operations_answer(gateway: GatewayUnderTest) -> None:
    for _ in range(3):
        httpx.post(gateway.url + "/v1/chat/completions", content=b"\xff\xfe", headers=OPENAI)
    ok = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=OPENAI)
    assert ok.status_code == 200
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["broker"] == "reachable"
    metrics = httpx.get(gateway.url + "/metrics").text
    for name in ("meterline_gateway_requests_total", "meterline_gateway_request_seconds_bucket",
                 "meterline_gateway_added_seconds_bucket", "meterline_envelopes_produced_total"):
        assert name in metrics
    assert ALICE_KEY not in metrics


def test_broker_down_readyz_degraded_calls_still_served(
        tmp_path_factory: pytest.TempPathFactory, keyed_simulator: KeyedUpstream) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_broker = f"127.0.0.1:{probe.getsockname()[1]}"
    settings = Settings(
        kafka={"embedded": False, "bootstrap_servers": dead_broker, "topic_prefix": "down"},
        gateway={"spool_dir": str(tmp_path_factory.mktemp("down") / "spool"), "log_format": "text"},
        providers={"openai": {"kind": "openai", "base_url": keyed_simulator.url,
                              "api_key": PROVIDER_KEY}},
        keys=[key_record(ALICE_KEY, "alice", "platform")])
    server = ThreadedServer(create_app(settings)).start()
    try:
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert (ready.json()["status"], ready.json()["broker"]) == ("degraded", "unreachable")
        served = httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers=OPENAI)
        assert served.status_code == 200 and served.json()["choices"]
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        server.stop()
