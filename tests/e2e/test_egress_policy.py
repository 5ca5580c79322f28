"""Issue 12's bar on the real pipeline: what leaves is audited, and secrets stay secret.

Gateway, worker, detector (anomalies and the sensitive-data scan) and store
run as subprocesses on the session broker. In audit mode: an allowlisted repo
passes clean; a breach passes and is recorded on its event and as an anomaly;
a secret and an e-mail address in a prompt are found (kind and place), the
message is kept redacted, and the secret's value appears nowhere in Kafka
(every topic of the deployment, read raw), ClickHouse (every table, every
column) or any process's log.

Part of the contract suite: on the embedded tansu broker and on Apache Kafka
(``backend``, tests/backends.py); on Kafka the raw read covers faust's changelogs too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from meterline.schemas import Topics
from tests.backends import Backend
from tests.harness import TEST_BODY_KEY, Pipeline, unique_prefix, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

AWS_KEY = "AKIAZ7VRSQ4TYHNX3B2M"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY9"
EMAIL = "priya.raman@acme-payments.example.com"
SECRETS = (AWS_KEY, AWS_SECRET, EMAIL)
REPO_HEADER = "x-meterline-repo"
EGRESS = {
    "mode": "audit",
    "rules": [{"name": "payments-restricted", "repos": ["acme/payments*"],
               "classification": "restricted", "providers": ["anthropic"],
               "body_policy": "redacted"},
              {"name": "vault-self-hosted-only", "repos": ["acme/vault*"], "providers": ["vllm"],
               "mode": "enforce"}],
    "sensitive": {"mode": "audit"},
}


@pytest.fixture
def audited(tmp_path: Path, backend: Backend, simulator: str,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    monkeypatch.setenv("METERLINE_EGRESS__BODY_KEY", TEST_BODY_KEY)
    running = Pipeline(tmp_path, backend.bootstrap_servers, simulator,
                       extra_config={"egress": EGRESS}, embedded=backend.embedded).start()
    yield running
    running.stop()


def _anthropic(pipeline: Pipeline, key: str, repo: str, text: str) -> httpx.Response:
    return httpx.post(pipeline.gateway_url + "/v1/messages", timeout=30,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                               REPO_HEADER: repo},
                      json={"model": "claude-haiku-4-5", "max_tokens": 64,
                            "system": "You are a coding agent.",
                            "messages": [{"role": "user", "content": text}]})


def _openai(pipeline: Pipeline, key: str, repo: str, text: str) -> httpx.Response:
    return httpx.post(pipeline.gateway_url + "/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}", REPO_HEADER: repo},
                      json={"model": "gpt-4o-mini",
                            "messages": [{"role": "user", "content": text}]})


def test_audit_mode_records_breaches_and_findings_and_no_secret_leaks(
        audited: Pipeline, backend: Backend) -> None:
    pipeline, broker = audited, backend.bootstrap_servers
    started = time.monotonic()
    key = pipeline.mint_key("bob", "payments")
    leaky = (f"Deploy fails. My ~/.aws/credentials:\naws_access_key_id = \"{AWS_KEY}\"\n"
             f"aws_secret_access_key = \"{AWS_SECRET}\"\nPing {EMAIL} if stuck.")
    clean = _anthropic(pipeline, key, "acme/payments-api", "Refactor the retry loop.")
    breach = _openai(pipeline, key, "acme/payments-api", "Explain the ledger schema.")
    secret = _anthropic(pipeline, key, "acme/payments-api", leaky)
    for response in (clean, breach, secret):
        assert response.status_code == 200, response.text
    ids = {name: r.headers["x-meterline-request-id"]
           for name, r in (("clean", clean), ("breach", breach), ("secret", secret))}

    wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == "3", 120,
               message="three events")
    rows = {row[0]: row[1:] for row in pipeline.sql(
        "SELECT request_id, policy_breach, policy_rules, length(request_messages), body_policy "
        "FROM events FINAL")}
    assert rows[ids["clean"]] == ["false", "[]", "2", "redacted"]
    assert rows[ids["breach"]] == ["true", "['payments-restricted']", "1", "redacted"]
    assert rows[ids["secret"]][0] == "false"  # audit mode: found, not refused

    def findings() -> list[list[str]]:
        return pipeline.sql("SELECT kind, category, request_id, message_index, start, end "
                            "FROM sensitive_findings FINAL ORDER BY start")
    found = wait_until(lambda: len(findings()) >= 3 and findings(), 120,
                       message="the scan's findings in ClickHouse")
    kinds = {row[0] for row in found}
    assert len(found) == 3 and {"aws_access_key", "email"} <= kinds
    # detect-secrets names the secret key by its keyword or by its AWS plugin
    assert kinds - {"aws_access_key", "email"} <= {"aws_secret_key", "keyword_password"}
    assert {row[2] for row in found} == {ids["secret"]}
    assert {row[3] for row in found} == {"1"}  # message 1: the user's (0 is the system prompt)
    text = leaky  # the message's text is exactly the prompt: offsets point at the values
    for kind, _, _, _, start, end in found:
        assert text[int(start):int(end)] in {AWS_KEY, AWS_SECRET, EMAIL} or any(
            value in text[int(start):int(end)] for value in SECRETS), kind

    kept = wait_until(lambda: pipeline.sql(
        f"SELECT text FROM audit_bodies FINAL WHERE first_request_id = '{ids['secret']}' "
        "AND role = 'user'"), 60, message="the redacted body")
    assert "[REDACTED:aws_access_key]" in kept[0][0] and "Deploy fails." in kept[0][0]

    anomalies = wait_until(lambda: {r[0] for r in pipeline.sql("SELECT kind FROM anomalies")}
                           >= {"policy_breach", "sensitive_data"} and pipeline.sql(
                               "SELECT kind, details FROM anomalies"), 120,
                           message="breach and sensitive-data findings")
    breach_details = [json.loads(d) for k, d in anomalies if k == "policy_breach"]
    assert breach_details[0]["evidence"]["request_id"] == ids["breach"]

    print(f"\negress scan on {backend.kind}: three calls audited, findings and anomalies "
          f"stored {time.monotonic() - started:.1f}s after the first call")
    _assert_nowhere(pipeline, broker)


def test_enforced_rule_refuses_in_each_api_shape_and_is_recorded(audited: Pipeline) -> None:
    pipeline = audited
    key = pipeline.mint_key("alice", "platform")
    openai_style = _openai(pipeline, key, "acme/vault-core", "Rotate the master key.")
    anthropic_style = _anthropic(pipeline, key, "acme/vault-core", "Rotate the master key.")
    assert openai_style.status_code == anthropic_style.status_code == 403
    error = openai_style.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "policy_violation")
    assert "vault-self-hosted-only" in error["message"] and "allowed: vllm" in error["message"]
    body = anthropic_style.json()
    assert (body["type"], body["error"]["type"]) == ("error", "permission_error")
    assert "vault-self-hosted-only" in body["error"]["message"]
    refused = {r.headers["x-meterline-request-id"] for r in (openai_style, anthropic_style)}
    wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == "2", 120,
               message="the refused calls as events")
    rows = pipeline.sql("SELECT request_id, status, error_class, policy_rules, cost_usd, "
                        "JSONExtractBool(policy_detail, 1, 'enforced') FROM events FINAL")
    assert {row[0] for row in rows} == refused
    for _, status, error_class, rules, cost, enforced in rows:
        assert (status, error_class, rules) == ("403", "PolicyRefused", "['vault-self-hosted-only']")
        assert Decimal(cost) == 0 and enforced in ("1", "true")


def _assert_nowhere(pipeline: Pipeline, broker: str) -> None:
    """No secret value in any topic, any table or any log of the deployment."""
    topics = _topics_of(broker, pipeline.prefix)
    assert set(Topics(pipeline.prefix).all()) <= set(topics)
    for topic in topics:
        for value in _raw_topic(broker, topic):
            assert not any(s.encode() in value for s in SECRETS), f"a secret in {topic}"
    tables = [row[0] for row in pipeline.sql(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND engine NOT LIKE '%View%'")]
    assert "audit_bodies" in tables and "sensitive_findings" in tables
    for table in tables:
        dump = "\n".join("\t".join(row) for row in pipeline.sql(f"SELECT * FROM {table}"))
        assert not any(s in dump for s in SECRETS), f"a secret in ClickHouse table {table}"
    logs = pipeline.logs_full()
    assert not any(s in logs for s in SECRETS), "a secret in a process log"


def _topics_of(broker: str, prefix: str) -> list[str]:
    """Every topic of the deployment: its own and faust's internal ones (changelogs...)."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": unique_prefix("raw")})
    try:
        return sorted(t for t in consumer.list_topics(timeout=10).topics if t.startswith(prefix))
    finally:
        consumer.close()


def _raw_topic(broker: str, topic: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": broker, "group.id": unique_prefix("raw"),
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        values: list[bytes] = []
        for partition in metadata.partitions:
            tp = TopicPartition(topic, partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            read, deadline = low, time.monotonic() + 30
            while read < high and time.monotonic() < deadline:
                for message in consumer.consume(500, 2.0):
                    if message.error() is None:
                        values.append((message.value() or b"") + (message.key() or b""))
                        read = (message.offset() or 0) + 1
        return values
    finally:
        consumer.close()
