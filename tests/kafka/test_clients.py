"""The Kafka seam: one configuration for every client, one policy per broker kind."""

from __future__ import annotations

import socket
from pathlib import Path

import faust
import pytest
import yaml
from pydantic import SecretStr, ValidationError

from meterline.embedded import free_port
from meterline.kafka import (
    APACHE_KAFKA,
    EMBEDDED,
    BrokerUnavailable,
    KafkaClients,
    create_topics,
    policy_for,
)
from meterline.schemas import ConfigError, KafkaSettings, load_settings

SCRAM = KafkaSettings(embedded=False, bootstrap_servers="kafka-1:9093,kafka-2:9093",
                      security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                      sasl_username="meterline", sasl_password=SecretStr("s3cret"),
                      ssl_ca_location="/etc/meterline/ca.pem")


def test_every_role_gets_the_brokers_and_the_credentials() -> None:
    clients = KafkaClients(SCRAM, role="worker")
    for config in (clients.producer_config(), clients.consumer_config("g"), clients.admin_config()):
        assert config["bootstrap.servers"] == "kafka-1:9093,kafka-2:9093"
        assert config["security.protocol"] == "SASL_SSL"
        assert (config["sasl.mechanism"], config["sasl.username"], config["sasl.password"]) == (
            "SCRAM-SHA-512", "meterline", "s3cret")
        assert config["ssl.ca.location"] == "/etc/meterline/ca.pem"
        assert config["ssl.endpoint.identification.algorithm"] == "https"
        assert config["client.id"] == "meterline-worker"


def test_plaintext_carries_no_security_keys() -> None:
    config = KafkaClients(KafkaSettings(), role="store").consumer_config("g")
    assert config["security.protocol"] == "PLAINTEXT"
    assert not [key for key in config if key.startswith(("sasl.", "ssl."))]
    assert (config["enable.auto.commit"], config["auto.offset.reset"]) == (False, "earliest")


def test_mutual_tls_needs_certificate_and_key_together() -> None:
    mtls = KafkaSettings(embedded=False, security_protocol="SSL", ssl_ca_location="/ca.pem",
                         ssl_certificate_location="/client.pem", ssl_key_location="/client.key",
                         ssl_key_password=SecretStr("k"))
    config = KafkaClients(mtls, role="gateway").producer_config()
    assert (config["ssl.certificate.location"], config["ssl.key.location"],
            config["ssl.key.password"]) == ("/client.pem", "/client.key", "k")
    assert "sasl.username" not in config
    with pytest.raises(ValidationError, match="both ssl_certificate_location and ssl_key_location"):
        KafkaSettings(embedded=False, security_protocol="SSL", ssl_certificate_location="/c.pem")
    with pytest.raises(ValidationError, match="needs sasl_username"):
        KafkaSettings(embedded=False, security_protocol="SASL_PLAINTEXT")
    with pytest.raises(ValidationError, match="PLAINTEXT only"):
        KafkaSettings(embedded=True, security_protocol="SSL")


def test_secrets_are_refused_in_the_file_and_read_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "meterline.yaml"
    config.write_text(yaml.safe_dump({"kafka": {
        "embedded": False, "security_protocol": "SASL_PLAINTEXT", "sasl_username": "m",
        "sasl_password": "inline"}}))
    with pytest.raises(ConfigError, match="METERLINE_KAFKA__SASL_PASSWORD"):
        load_settings(str(config), environ={})
    config.write_text(yaml.safe_dump({"kafka": {
        "embedded": False, "security_protocol": "SASL_PLAINTEXT", "sasl_username": "m"}}))
    monkeypatch.setenv("METERLINE_KAFKA__SASL_PASSWORD", "from-env")
    settings = load_settings(str(config))
    assert KafkaClients(settings.kafka, role="store").base_config()["sasl.password"] == "from-env"


def test_the_policy_turns_the_embedded_workarounds_on_only_for_the_embedded_broker() -> None:
    assert policy_for(KafkaSettings(embedded=True)) is EMBEDDED
    assert policy_for(KafkaSettings(embedded=False)) is APACHE_KAFKA
    workarounds = ("guard_topic_incarnations", "watch_topic_incarnations", "create_missing_topics",
                   "end_changelog_batches", "wait_for_dead_members")
    assert all(getattr(EMBEDDED, name) for name in workarounds)
    assert not any(getattr(APACHE_KAFKA, name) for name in workarounds)
    assert (EMBEDDED.static_membership, APACHE_KAFKA.static_membership) == (False, True)
    assert (EMBEDDED.idempotent_producers, APACHE_KAFKA.idempotent_producers) == (False, True)


def test_static_membership_on_kafka_only_with_a_stable_member_id() -> None:
    kafka = KafkaClients(KafkaSettings(embedded=False), role="store")
    config = kafka.consumer_config("meterline-sink", member="sink")
    assert config["group.instance.id"] == f"{socket.gethostname()}-store-sink"
    assert KafkaClients(KafkaSettings(embedded=False), role="store").consumer_config(
        "meterline-sink", member="sink")["group.instance.id"] == config["group.instance.id"]
    named = KafkaClients(KafkaSettings(embedded=False, group_instance_id="worker-2"),
                         role="worker")
    assert named.faust_options()["consumer_group_instance_id"] == "worker-2-app"
    embedded = KafkaClients(KafkaSettings(embedded=True), role="worker")
    assert "group.instance.id" not in embedded.consumer_config("g", member="sink")
    assert "consumer_group_instance_id" not in embedded.faust_options()
    assert embedded.producer_config()["enable.idempotence"] is False


def test_faust_gets_the_same_brokers_and_credentials() -> None:
    options = KafkaClients(SCRAM.model_copy(update={"ssl_ca_location": ""}),
                           role="detector").faust_options()
    assert options["broker"] == "kafka://kafka-1:9093;kafka://kafka-2:9093"
    credentials = options["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value) == (
        "meterline", "s3cret", "SCRAM-SHA-512")
    assert credentials.ssl_context is not None
    assert "broker_credentials" not in KafkaClients(KafkaSettings(), role="w").faust_options()


def test_an_unreachable_broker_is_our_transient_error() -> None:
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerUnavailable, match="listing topics"):
        create_topics(dead, ["t"], partitions=1, timeout_s=1.0)
