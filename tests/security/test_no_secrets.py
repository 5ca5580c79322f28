"""No secret reaches Kafka, ClickHouse or a log, on the real pipeline.

Store, worker, detector and gateway run as subprocesses on the session broker
with five planted secrets: a provider API key (the OpenAI provider points at
the simulator with a key), a virtual key, a team's Slack webhook, the body
key, and both store tokens. Calls go through both API shapes, the dashboard
and the store endpoint are used with right and wrong credentials, a budget
alert may fire; then every topic (read raw), every table and column, and
every role's log is searched for each secret (the pattern of
tests/e2e/test_egress_policy.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from meterline.sinks import QueryError, remote_query
from tests.e2e.test_egress_policy import _raw_topic, _topics_of
from tests.harness import (
    TEST_BODY_KEY,
    TEST_STORE_OPERATOR_TOKEN,
    TEST_STORE_READ_TOKEN,
    Pipeline,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.store]

PROVIDER_KEY = "sk-planted-provider-key-7d1e0c9a5b"
WEBHOOK = "http://127.0.0.1:9/services/T0PLANTED/B0PLANTED/planted-webhook-secret-31f2"


@pytest.fixture
def planted(tmp_path: Path, broker: str, simulator: str,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    monkeypatch.setenv("METERLINE_TEST_PROVIDER_KEY", PROVIDER_KEY)
    monkeypatch.setenv("METERLINE_TEST_PLATFORM_WEBHOOK", WEBHOOK)
    extra = {
        "providers": {"openai": {"kind": "openai", "base_url": simulator,
                                 "api_key_env": "METERLINE_TEST_PROVIDER_KEY"}},
        "teams": [{"name": "platform", "cost_centre": "CC-4100", "budget_usd": 0.000001,
                   "slack_webhook_env": "METERLINE_TEST_PLATFORM_WEBHOOK"}],
    }
    running = Pipeline(tmp_path, broker, simulator, extra_config=extra).start()
    yield running
    running.stop()


def test_no_secret_in_kafka_clickhouse_or_any_log(planted: Pipeline, broker: str) -> None:
    pipeline = planted
    key = pipeline.mint_key("alice", "platform")
    secrets = {"provider key": PROVIDER_KEY, "virtual key": key, "webhook": WEBHOOK,
               "webhook path": WEBHOOK.rsplit("/", 1)[1], "body key": TEST_BODY_KEY,
               "store read token": TEST_STORE_READ_TOKEN,
               "store operator token": TEST_STORE_OPERATOR_TOKEN}
    openai = httpx.post(pipeline.gateway_url + "/v1/chat/completions", timeout=30,
                        params={"api_key": key},
                        headers={"authorization": f"Bearer {key}"},
                        json={"model": "gpt-4o-mini",
                              "messages": [{"role": "user", "content": "Summarise the diff."}]})
    anthropic = httpx.post(pipeline.gateway_url + "/v1/messages", timeout=30,
                           headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                           json={"model": "claude-haiku-4-5", "max_tokens": 32,
                                 "messages": [{"role": "user", "content": "Name the test."}]})
    assert openai.status_code == anthropic.status_code == 200, openai.text + anthropic.text
    for bad in (f"wrong-{key}", PROVIDER_KEY):  # refused keys are logged as refused, not shown
        assert httpx.post(pipeline.gateway_url + "/v1/messages", json={},
                          headers={"x-api-key": bad}).status_code == 401
    dashboard = httpx.post(pipeline.gateway_url + "/ui/login", data={"key": key})
    assert dashboard.status_code == 403  # no CSRF token: refused before the key is looked at
    for token in ("not-a-store-token-" + "x" * 30, TEST_STORE_READ_TOKEN[::-1]):
        with pytest.raises(QueryError, match="wrong credential"):
            remote_query(pipeline.store_url, "SELECT 1", token=token)
    wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == "2", 120,
               message="both calls stored")

    topics = _topics_of(broker, pipeline.prefix)
    assert topics
    for topic in topics:
        for value in _raw_topic(broker, topic):
            for name, secret in secrets.items():
                assert secret.encode() not in value, f"the {name} in topic {topic}"
    tables = [row[0] for row in pipeline.sql(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND engine NOT LIKE '%View%'")]
    assert "events" in tables
    for table in tables:
        dump = "\n".join("\t".join(row) for row in pipeline.sql(f"SELECT * FROM {table}"))
        for name, secret in secrets.items():
            assert secret not in dump, f"the {name} in ClickHouse table {table}"
    logs = pipeline.logs_full()
    assert "wrong credential" in logs and "refused" in logs  # the refusals were logged ...
    for name, secret in secrets.items():  # ... and nothing secret with them
        assert secret not in logs, f"the {name} in a process log"
