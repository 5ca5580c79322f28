"""The gateway's bad inputs, on the real app with a key-checking simulated provider.

Oversized and malformed bodies are answered in the caller's API shape;
credentials and hop-by-hop headers from the client never reach the upstream,
nor does a header value carrying CR, LF or NUL; a client trickling its body
(slowloris) is cut off after ``gateway.body_timeout_s``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.ingest.gateway_harness import (
    ALICE_KEY,
    PROVIDER_KEY,
    GatewayUnderTest,
    KeyedUpstream,
    running_keyed_upstream,
)

LIMIT = 64 * 1024
TIMEOUT_S = 1.0
OPENAI = {"authorization": f"Bearer {ALICE_KEY}"}
ANTHROPIC = {"x-api-key": ALICE_KEY, "anthropic-version": "2023-06-01"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 16,
           "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def upstream() -> Iterator[KeyedUpstream]:
    yield from running_keyed_upstream()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, broker: str,
            upstream: KeyedUpstream) -> Iterator[GatewayUnderTest]:
    running = GatewayUnderTest(Path(tmp_path_factory.mktemp("security-gw")), broker, upstream.url,
                               max_body_bytes=LIMIT, body_timeout_s=TIMEOUT_S)
    yield running
    running.stop()


def openai_error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def anthropic_error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    error: dict[str, str] = body["error"]
    return error


def test_oversized_bodies_are_413_in_each_api_shape(gateway: GatewayUnderTest) -> None:
    big = orjson.dumps({**CHAT, "pad": "x" * LIMIT})
    error = openai_error(httpx.post(gateway.url + "/v1/chat/completions", content=big,
                                    headers={**OPENAI, "content-type": "application/json"}), 413)
    assert error["code"] == "request_too_large" and str(LIMIT) in error["message"]

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    anthropic = anthropic_error(httpx.post(gateway.url + "/v1/messages", content=chunked(),
                                           headers={**ANTHROPIC,
                                                    "content-type": "application/json"}), 413)
    assert anthropic["type"] == "request_too_large"


@pytest.mark.parametrize("body", [b"{", b"[]", b"null", b'{"model": }', b"\xff\xfe",
                                  b'{"model": "gpt-4o-mini", "messages": "' + b"\\" + b'"'])
def test_malformed_json_is_400_in_each_api_shape(gateway: GatewayUnderTest, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    error = openai_error(httpx.post(gateway.url + "/v1/chat/completions", content=body,
                                    headers={**OPENAI, **headers}), 400)
    assert error["type"] == "invalid_request_error"
    anthropic = anthropic_error(httpx.post(gateway.url + "/v1/messages", content=body,
                                           headers={**ANTHROPIC, **headers}), 400)
    assert anthropic["type"] == "invalid_request_error"


def test_client_credentials_and_hop_by_hop_headers_never_reach_upstream(
        gateway: GatewayUnderTest, upstream: KeyedUpstream) -> None:
    smuggled = {"x-api-key": "sk-client-supplied", "api-key": "sk-client-azure",
                "proxy-authorization": "Basic c2VjcmV0", "cookie": "meterline_session=abc",
                "connection": "keep-alive, x-hop-secret", "x-hop-secret": "1",
                "te": "trailers", "upgrade": "h2c", "x-meterline-repo": "acme/api",
                "x-forwarded-host": "evil.example"}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT,
                          headers={**OPENAI, **smuggled})
    assert response.status_code == 200, response.text
    seen = upstream.last_headers
    assert seen["authorization"] == f"Bearer {PROVIDER_KEY}"
    for name in ("x-api-key", "api-key", "proxy-authorization", "cookie", "x-hop-secret", "te",
                 "upgrade", "x-meterline-repo"):
        assert name not in seen, name
    assert ALICE_KEY not in orjson.dumps(seen).decode()

    anthropic = httpx.post(gateway.url + "/v1/messages", json=MESSAGE,
                           headers={**ANTHROPIC, "api-key": "sk-client-azure",
                                    "proxy-authorization": "Basic c2VjcmV0"})
    assert anthropic.status_code == 200, anthropic.text
    seen = upstream.last_headers
    assert seen["x-api-key"] == PROVIDER_KEY
    assert not {"authorization", "api-key", "proxy-authorization"} & set(seen)


def _raw(gateway: GatewayUnderTest, request: bytes, wait_s: float = 5.0) -> bytes:
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


@pytest.mark.parametrize("header", [
    b"X-Injected: a\r\n x-api-key: sk-folded",  # obsolete line folding
    b"X-Injected: a\rx-api-key: sk-bare-cr",
    b"X-Injected: a\x00b",
])
def test_cr_lf_and_nul_in_header_values_never_reach_upstream(
        gateway: GatewayUnderTest, upstream: KeyedUpstream, header: bytes) -> None:
    upstream.app.state.last_headers = {}
    body = orjson.dumps(CHAT)
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
               b"Authorization: Bearer " + ALICE_KEY.encode() + b"\r\n" + header + b"\r\n"
               b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
               + b"\r\nConnection: close\r\n\r\n" + body)
    answer = _raw(gateway, request)
    seen = upstream.last_headers
    assert all("\r" not in v and "\n" not in v and "\x00" not in v for v in seen.values())
    assert seen.get("x-api-key") is None
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 200")), answer[:100]


def test_a_slow_client_is_cut_off_in_bounded_time(gateway: GatewayUnderTest) -> None:
    """Slowloris: a declared body trickled one byte at a time gets 408 after body_timeout_s."""
    host, port = gateway.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                     b"Authorization: Bearer " + ALICE_KEY.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        answer = b""
        sock.settimeout(0.25)
        while time.monotonic() - started < 8 and b"\r\n\r\n" not in answer:
            try:
                sock.sendall(b" ")
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 3
    assert b'"code":"request_timeout"' in answer.replace(b" ", b"")


def test_a_key_in_a_gateway_url_is_never_logged(gateway: GatewayUnderTest,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        for path in ("/v1/chat/completions", "/v1/messages", "/v1/nope", "/ui/overview"):
            httpx.post(gateway.url + path, params={"key": ALICE_KEY, "api_key": ALICE_KEY},
                       content=b"{", headers={"content-type": "application/json"})
        httpx.get(gateway.url + "/v1/models", params={"api_key": ALICE_KEY})
    served = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any("refused" in r.getMessage() for r in served)  # refusals are logged ...
    for record in served:  # ... without the key the URL carried
        assert ALICE_KEY not in record.getMessage() + str(record.args), record.name
