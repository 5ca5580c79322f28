"""The egress policy at the gateway: allowlists judged before a call leaves.

Real gateway, real broker (envelopes read back from the topic), simulated
provider. Audit mode passes a breach and records it on the envelope; enforce
mode refuses it in the client's own API error format, before the provider sees
anything; an exception lets it through, recorded as excepted; a secret in a
prompt is refused inline in sensitive ``enforce`` mode, and the refusal never
repeats the secret.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from meterline.schemas import AuditMessage, Topics
from tests.harness import TEST_BODY_KEY, unique_prefix
from tests.ingest.gateway_harness import ALICE_KEY, BOB_KEY, REQUEST_ID, GatewayUnderTest, KeyedUpstream

pytestmark = pytest.mark.store

REPO = "x-meterline-repo"
AWS_KEY = "AKIAZ7VRSQ4TYHNX3B2M"
RULES = [
    {"name": "payments-restricted", "repos": ["acme/payments*"], "classification": "restricted",
     "providers": ["anthropic"], "models": ["claude-haiku*"], "body_policy": "redacted"},
]


def _egress(mode: str, sensitive: str = "audit", **extra: Any) -> dict[str, Any]:
    return {"mode": mode, "rules": RULES, "sensitive": {"mode": sensitive},
            "body_key": TEST_BODY_KEY, **extra}


@pytest.fixture(scope="module")
def audit_gateway(tmp_path_factory: pytest.TempPathFactory, broker: str,
                  keyed_simulator: KeyedUpstream) -> Iterator[GatewayUnderTest]:
    running = GatewayUnderTest(tmp_path_factory.mktemp("audit"), broker, keyed_simulator.url,
                               egress=_egress("audit", exceptions=[
                                   {"rule": "payments-restricted", "users": ["alice"],
                                    "reason": "SEC-42 migration"}]))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def enforce_gateway(tmp_path_factory: pytest.TempPathFactory, broker: str,
                    keyed_simulator: KeyedUpstream) -> Iterator[GatewayUnderTest]:
    running = GatewayUnderTest(tmp_path_factory.mktemp("enforce"), broker, keyed_simulator.url,
                               egress=_egress("enforce", sensitive="enforce"))
    yield running
    running.stop()


def _chat(gateway: GatewayUnderTest, key: str, repo: str, text: str = "hello",
          model: str = "gpt-4o-mini") -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}", REPO: repo},
                      json={"model": model, "messages": [{"role": "user", "content": text}]})


def _messages(gateway: GatewayUnderTest, key: str, repo: str, model: str,
              text: str = "hello") -> httpx.Response:
    return httpx.post(gateway.url + "/v1/messages", timeout=30,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01", REPO: repo},
                      json={"model": model, "max_tokens": 50,
                            "messages": [{"role": "user", "content": text}]})


def test_allowlisted_call_passes_with_no_breach(audit_gateway: GatewayUnderTest) -> None:
    response = _messages(audit_gateway, BOB_KEY, "acme/payments-api", "claude-haiku-4-5")
    assert response.status_code == 200
    envelope = audit_gateway.envelopes.get(response.headers[REQUEST_ID])
    assert envelope.breaches == []
    assert envelope.body.policy == "redacted"  # the rule's body policy
    assert len(envelope.body.request_messages) == 1


def test_breach_in_audit_mode_passes_and_is_recorded(audit_gateway: GatewayUnderTest) -> None:
    response = _chat(audit_gateway, BOB_KEY, "acme/payments-api")
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]
    envelope = audit_gateway.envelopes.get(response.headers[REQUEST_ID])
    [breach] = envelope.breaches
    assert (breach.rule, breach.kind, breach.enforced, breach.excepted) == (
        "payments-restricted", "provider_not_allowed", False, False)
    assert "acme/payments-api" in breach.detail and "openai" in breach.detail


def test_exception_lets_the_call_through_recorded_as_excepted(
        audit_gateway: GatewayUnderTest) -> None:
    response = _chat(audit_gateway, ALICE_KEY, "acme/payments-api")
    assert response.status_code == 200
    [breach] = audit_gateway.envelopes.get(response.headers[REQUEST_ID]).breaches
    assert breach.excepted and not breach.enforced


def test_enforce_refuses_in_openai_shape_before_anything_leaves(
        enforce_gateway: GatewayUnderTest, keyed_simulator: KeyedUpstream) -> None:
    keyed_simulator.app.state.last_headers = {}
    response = _chat(enforce_gateway, BOB_KEY, "acme/payments-api")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "policy_violation"
    assert error["type"] == "invalid_request_error"
    assert "payments-restricted" in error["message"] and "openai" in error["message"]
    assert keyed_simulator.app.state.last_headers == {}  # the provider never saw it
    envelope = enforce_gateway.envelopes.get(response.headers[REQUEST_ID])
    assert (envelope.status, envelope.outcome, envelope.error_class) == (
        403, "gateway_error", "PolicyRefused")
    assert envelope.breaches[0].enforced


def test_enforce_refuses_in_anthropic_shape(enforce_gateway: GatewayUnderTest) -> None:
    response = _messages(enforce_gateway, BOB_KEY, "acme/payments-api", "claude-sonnet-4-5")
    assert response.status_code == 403
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert "model 'claude-sonnet-4-5' is not allowed" in body["error"]["message"]
    # the same repo, an allowed model: through
    ok = _messages(enforce_gateway, BOB_KEY, "acme/payments-api", "claude-haiku-4-5")
    assert ok.status_code == 200


def test_unknown_repo_uses_the_default_allowlist(enforce_gateway: GatewayUnderTest) -> None:
    assert _chat(enforce_gateway, BOB_KEY, "acme/docs").status_code == 200


def test_secret_in_prompt_refused_inline_without_echoing_it(
        enforce_gateway: GatewayUnderTest) -> None:
    prompt = f"why does this fail?\naws_access_key_id = \"{AWS_KEY}\"\n"
    response = _chat(enforce_gateway, BOB_KEY, "acme/docs", prompt)
    assert response.status_code == 403
    message = response.json()["error"]["message"]
    assert "aws_access_key in message 0" in message and "sensitive-data" in message
    assert AWS_KEY not in response.text
    envelope = enforce_gateway.envelopes.get(response.headers[REQUEST_ID])
    assert AWS_KEY not in envelope.model_dump_json()
    assert _chat(enforce_gateway, BOB_KEY, "acme/docs", "a clean prompt").status_code == 200


def test_each_distinct_message_is_shipped_once_and_sealed(
        tmp_path: Path, broker: str, keyed_simulator: KeyedUpstream) -> None:
    gateway = GatewayUnderTest(tmp_path, broker, keyed_simulator.url, egress=_egress("audit"))
    try:
        conversation: list[dict[str, str]] = []
        for turn in range(5):  # an agent resending the whole conversation every turn
            conversation.append({"role": "user", "content": f"turn {turn}: {AWS_KEY}"})
            response = httpx.post(
                gateway.url + "/v1/chat/completions", timeout=30,
                headers={"authorization": f"Bearer {BOB_KEY}"},
                json={"model": "gpt-4o-mini", "messages": conversation})
            assert response.status_code == 200
            conversation.append(response.json()["choices"][0]["message"])
        shipped = _read_all(broker, Topics(gateway.prefix).audit_messages, expect=9)
        records = [AuditMessage.model_validate_json(value) for value in shipped]
        assert len({r.message_hash for r in records}) == len(records) == 9  # 5 user + 4 replies
        assert not any(AWS_KEY.encode() in value for value in shipped)
    finally:
        gateway.stop()


def _read_all(broker: str, topic: str, expect: int, timeout_s: float = 20.0) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": broker, "group.id": unique_prefix("r"),
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, -2) for p in range(2)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            values.extend(m.value() or b"" for m in consumer.consume(100, 0.5) if m.error() is None)
            if len(values) >= expect:
                time.sleep(1.0)  # and nothing more arrives
                values.extend(m.value() or b"" for m in consumer.consume(100, 0.5)
                              if m.error() is None)
                break
        return values
    finally:
        consumer.close()
