"""The proxy against a simulated provider: credentials, pass-through, every ending's envelope."""

from __future__ import annotations

import socket
import time

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.ingest.gateway_harness import (
    ALICE_KEY,
    BOB_KEY,
    PROVIDER_KEY,
    REQUEST_ID,
    GatewayUnderTest,
    KeyedUpstream,
)

pytestmark = pytest.mark.store

OPENAI = {"authorization": f"Bearer {ALICE_KEY}"}
ANTHROPIC = {"x-api-key": ALICE_KEY, "anthropic-version": "2023-06-01"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Plan the sprint."}]}
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 64,
           "messages": [{"role": "user", "content": "Review this diff, please."}]}


def test_provider_key_injected_client_key_never_forwarded(gateway: GatewayUnderTest,
                                                          keyed_simulator: KeyedUpstream) -> None:
    response = httpx.post(gateway.url + "/v1/messages?beta=true", json=MESSAGE, headers={
        **ANTHROPIC, "anthropic-beta": "prompt-caching-2024-07-31", "user-agent": "claude-cli/2.0.1"})
    assert response.status_code == 200, response.text
    seen = keyed_simulator.last_headers
    assert seen["x-api-key"] == PROVIDER_KEY
    assert seen["anthropic-version"] == "2023-06-01"
    assert seen["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert seen["user-agent"] == "claude-cli/2.0.1"
    assert ALICE_KEY not in orjson.dumps(seen).decode()
    assert PROVIDER_KEY not in response.text + str(response.headers)

    httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=OPENAI)
    seen = keyed_simulator.last_headers
    assert seen["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert "x-api-key" not in seen

    envelope = gateway.envelopes.get(response.headers[REQUEST_ID])
    assert (envelope.tool, envelope.repo, envelope.repo_source) == (
        "claude-code", "acme/api", "key_default")
    assert ALICE_KEY not in envelope.model_dump_json()


def test_repo_from_header_then_metadata_then_key(gateway: GatewayUnderTest) -> None:
    header = httpx.post(gateway.url + "/v1/chat/completions", json={
        **CHAT, "metadata": {"repo": "acme/web"}}, headers={**OPENAI, "x-meterline-repo": "acme/cli"})
    metadata = httpx.post(gateway.url + "/v1/chat/completions", json={
        **CHAT, "metadata": {"repo": "acme/web"}}, headers=OPENAI)
    unknown = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT,
                         headers={"authorization": f"Bearer {BOB_KEY}"})
    found = [gateway.envelopes.get(r.headers[REQUEST_ID]) for r in (header, metadata, unknown)]
    assert [(e.repo, e.repo_source) for e in found] == [
        ("acme/cli", "header"), ("acme/web", "metadata"), ("", "unknown")]
    assert [e.user for e in found] == ["alice", "alice", "bob"]


def test_alias_maps_to_provider_and_served_model(gateway: GatewayUnderTest) -> None:
    response = httpx.post(gateway.url + "/v1/chat/completions", headers=OPENAI, json={
        **CHAT, "model": "local-llama"})
    assert response.json()["model"] == "llama-3.3-70b-instruct"
    envelope = gateway.envelopes.get(response.headers[REQUEST_ID])
    assert (envelope.provider, envelope.requested_model, envelope.served_model) == (
        "local", "local-llama", "llama-3.3-70b-instruct")


def test_models_list_is_upstream_plus_aliases(gateway: GatewayUnderTest) -> None:
    listed = httpx.get(gateway.url + "/v1/models", headers=OPENAI).json()
    ids = [item["id"] for item in listed["data"]]
    assert "gpt-4o-mini" in ids and ids[-2:] == ["fast", "local-llama"]
    anthropic = httpx.get(gateway.url + "/v1/models", headers=ANTHROPIC).json()
    assert anthropic["data"][0]["type"] == "model" and anthropic["last_id"] == "local-llama"


@pytest.mark.parametrize(("path", "body", "headers", "status"), [
    ("/v1/chat/completions", CHAT, OPENAI, 429),
    ("/v1/messages", MESSAGE, ANTHROPIC, 529),
    ("/v1/responses", {"model": "o4-mini", "input": "x"}, OPENAI, 500),
])
def test_upstream_errors_pass_through_unchanged(gateway: GatewayUnderTest,
                                                keyed_simulator: KeyedUpstream, path: str,
                                                body: dict[str, object], headers: dict[str, str],
                                                status: int) -> None:
    knob = {"x-sim-status": str(status)}
    direct = httpx.post(keyed_simulator.url + path, json=body,
                        headers={**knob, "authorization": f"Bearer {PROVIDER_KEY}"})
    proxied = httpx.post(gateway.url + path, json=body, headers={**headers, **knob})
    assert (proxied.status_code, proxied.content) == (direct.status_code, direct.content)
    if status == 429:
        assert proxied.headers["retry-after"] == "1"
    envelope = gateway.envelopes.get(proxied.headers[REQUEST_ID])
    assert (envelope.outcome, envelope.status, envelope.error_class) == (
        "upstream_error", status, f"http_{status}")
    assert gateway.metric("meterline_gateway_upstream_errors_total", f'kind="http_{status}"') >= 1


def test_upstream_timeout_is_504_with_envelope(gateway: GatewayUnderTest) -> None:
    response = httpx.post(gateway.url + "/v1/messages", json=MESSAGE,
                          headers={**ANTHROPIC, "x-sim-latency-ms": "1500"})
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"
    envelope = gateway.envelopes.get(response.headers[REQUEST_ID])
    assert (envelope.outcome, envelope.status) == ("upstream_timeout", 504)


def test_unreachable_upstream_is_502_with_envelope(tmp_path_factory: pytest.TempPathFactory,
                                                   broker: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    gateway = GatewayUnderTest(tmp_path_factory.mktemp("dead"), broker, dead)
    try:
        response = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=OPENAI)
        assert response.status_code == 502
        assert "could not be reached" in response.json()["error"]["message"]
        envelope = gateway.envelopes.get(response.headers[REQUEST_ID])
        assert (envelope.outcome, envelope.error_class) == ("upstream_error", "UpstreamUnavailable")
    finally:
        gateway.stop()


def test_client_disconnect_mid_stream_keeps_partial_usage(gateway: GatewayUnderTest) -> None:
    body = {**MESSAGE, "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/messages", json=body,
                      headers={**ANTHROPIC, "x-sim-stall-ms": "800"}) as response:
        request_id = response.headers[REQUEST_ID]
        first = next(response.iter_raw())
        assert b"message_start" in first
    envelope = gateway.envelopes.get(request_id)
    assert envelope.outcome == "client_disconnect" and envelope.stream
    # message_start's input count is the provider's; the output is estimated
    assert envelope.usage.input_tokens > 0 and envelope.usage.source == "estimated"
    time.sleep(0.1)
    assert gateway.metric("meterline_gateway_client_disconnects_total") >= 1


def test_stream_cut_by_upstream_is_estimated_and_cut_for_client(gateway: GatewayUnderTest) -> None:
    body = {**CHAT, "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body,
                      headers={**OPENAI, "x-sim-cut-after": "5"}) as response:
        request_id = response.headers[REQUEST_ID]
        with pytest.raises(httpx.RemoteProtocolError):
            b"".join(response.iter_raw())
    envelope = gateway.envelopes.get(request_id)
    assert envelope.outcome == "upstream_error"
    assert envelope.usage.source == "estimated"
    assert envelope.usage.input_tokens > 0 and envelope.usage.output_tokens > 0


def test_upstream_silent_mid_stream_is_a_timeout(gateway: GatewayUnderTest) -> None:
    with httpx.stream("POST", gateway.url + "/v1/responses",
                      json={"model": "o4-mini", "input": "slow", "stream": True},
                      headers={**OPENAI, "x-sim-stall-ms": "1500"}) as response:
        request_id = response.headers[REQUEST_ID]
        with pytest.raises(httpx.RemoteProtocolError):
            b"".join(response.iter_raw())
    envelope = gateway.envelopes.get(request_id)
    assert envelope.outcome == "upstream_timeout" and envelope.usage.source == "estimated"


@pytest.mark.parametrize(("path", "body", "headers"), [
    ("/v1/chat/completions", CHAT, OPENAI),
    ("/v1/messages", MESSAGE, ANTHROPIC),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "abc def"}, OPENAI),
])
def test_missing_usage_is_estimated_not_zero(gateway: GatewayUnderTest, path: str,
                                             body: dict[str, object],
                                             headers: dict[str, str]) -> None:
    response = httpx.post(gateway.url + path, json=body, headers={**headers, "x-sim-no-usage": "1"})
    assert response.status_code == 200 and "usage" not in response.json()
    envelope = gateway.envelopes.get(response.headers[REQUEST_ID])
    assert envelope.outcome == "ok" and envelope.usage.source == "estimated"
    assert envelope.usage.input_tokens > 0
    assert gateway.metric("meterline_gateway_usage_total", 'source="estimated"') >= 1


def test_stream_failing_before_first_byte_gets_a_proper_error(gateway: GatewayUnderTest) -> None:
    response = httpx.post(gateway.url + "/v1/messages", json={**MESSAGE, "stream": True},
                          headers={**ANTHROPIC, "x-sim-cut-after": "0"})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"
    assert "failed mid-response" in response.json()["error"]["message"]
    envelope = gateway.envelopes.get(response.headers[REQUEST_ID])
    assert (envelope.outcome, envelope.status, envelope.stream) == ("upstream_error", 502, True)


def test_sdks_see_provider_rate_limits_and_overload_as_from_the_provider(
        gateway: GatewayUnderTest) -> None:
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    with pytest.raises(openai.RateLimitError) as limited:
        oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"],  # type: ignore[arg-type]
                                    extra_headers={"x-sim-status": "429"})
    assert limited.value.status_code == 429
    assert limited.value.response.headers["retry-after"] == "1"
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=ALICE_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.create(model="claude-opus-4-6", max_tokens=16, stream=True,
                               messages=[{"role": "user", "content": "hi"}],
                               extra_headers={"x-sim-status": "529"})
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
