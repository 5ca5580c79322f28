"""Every client reaches a Kafka that asks for credentials: SASL/SCRAM-SHA-512 end to end.

The session's Apache Kafka broker also listens with SASL_PLAINTEXT (SCRAM-SHA-512 and
PLAIN, ``tests.backends.SASL_USER``). The whole pipeline runs against that listener,
configured as an operator would: ``kafka.security_protocol``, ``kafka.sasl_mechanism``
and ``kafka.sasl_username`` in the file, the password only in the environment
(``METERLINE_KAFKA__SASL_PASSWORD``). The gateway's producer and confirmations
reader, the worker's consumer and producer, the store's sinks and the detector's
faust app (``faust.SASLCredentials``) all authenticate through ``KafkaClients``;
one call through the gateway becomes one priced row, and the topics are created
through the seam's admin client on the same listener. A wrong password is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from meterline.embedded import wait_for_port
from meterline.kafka import BrokerError, create_topics
from meterline.schemas import KafkaSettings, Topics
from tests.backends import SASL_PASSWORD, SASL_USER, LocalKafka
from tests.harness import Pipeline, Role, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

SCRAM = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
         "sasl_username": SASL_USER}


def sasl_settings(kafka: LocalKafka, prefix: str, password: str) -> KafkaSettings:
    return KafkaSettings(embedded=False, bootstrap_servers=kafka.sasl_bootstrap_servers,
                         topic_prefix=prefix, partitions=2, sasl_password=SecretStr(password),
                         **SCRAM)


@pytest.fixture
def sasl_pipeline(tmp_path: Path, kafka_broker: LocalKafka, simulator: str) -> Iterator[Pipeline]:
    pipeline = Pipeline(tmp_path, kafka_broker.sasl_bootstrap_servers, simulator,
                        extra_config={"kafka": SCRAM}, embedded=False)
    create_topics(sasl_settings(kafka_broker, pipeline.prefix, SASL_PASSWORD),
                  Topics(pipeline.prefix).all(), partitions=2)
    password = {"METERLINE_KAFKA__SASL_PASSWORD": SASL_PASSWORD}
    for name in list(pipeline.roles):
        pipeline.roles[name] = Role(name, pipeline.config, tmp_path, env=password).start()
    try:
        wait_for_port("127.0.0.1", pipeline.store_port, 60)
        wait_for_port("127.0.0.1", pipeline.gateway_port, 60)
        yield pipeline
    finally:
        pipeline.stop()


def test_the_pipeline_runs_over_sasl_scram(sasl_pipeline: Pipeline) -> None:
    pipeline = sasl_pipeline
    # the CLI writes the key to the registry over SASL too, with the same credential
    key = pipeline.mint_key("alice", "platform", repo="acme/api",
                            env={"METERLINE_KAFKA__SASL_PASSWORD": SASL_PASSWORD})
    response = httpx.post(f"{pipeline.gateway_url}/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": "gpt-4o-mini",
                                "messages": [{"role": "user", "content": "over SCRAM"}]})
    assert response.status_code == 200, response.text
    request_id = response.headers["x-meterline-request-id"]
    row = wait_until(lambda: pipeline.sql(
        f"SELECT user, team, served_model, cost_usd > 0 FROM events "
        f"WHERE request_id = '{request_id}'"), 120, 0.5, message="the call's row")
    assert row == [["alice", "platform", "gpt-4o-mini", "1"]]
    logs = pipeline.logs_full()
    assert SASL_PASSWORD not in logs
    assert "SASL authentication" not in logs
    assert "detector" in pipeline.roles and pipeline.roles["detector"].alive()


def test_a_wrong_password_is_refused(kafka_broker: LocalKafka) -> None:
    with pytest.raises(BrokerError):
        create_topics(sasl_settings(kafka_broker, "refused", "not-the-password"), ["refused.t"],
                      partitions=1, timeout_s=5)
