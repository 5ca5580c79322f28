"""Every Kafka client's configuration, built in one place from ``KafkaSettings``.

``KafkaClients(kafka, role=...)`` is what a stage asks for a producer, a
consumer, an admin client or the options of a faust app. Each starts from
``KafkaSettings.as_librdkafka()`` (where the brokers are, TLS and SASL, with
secrets from the environment), adds the role's client id, then the settings
the use needs. Why one place: a cluster that needs SASL/SCRAM or mutual TLS
is reached by every client or by none, and the embedded broker's policy
(``quirks``) decides idempotence and static membership the same way
everywhere.

Role settings, and why:

- producers: ``acks=all`` and lz4 batches; idempotent on Kafka (the embedded
  broker refuses a restarted producer's idempotent session);
- consumers: never auto-commit (every stage commits after its output is
  durable), start at the earliest offset of a new group, a short session so a
  crashed member is noticed in seconds; on Kafka, a stable
  ``group.instance.id`` per process (static membership), so a restarted member
  takes its place without a rebalance or a wait;
- faust apps: the same brokers and credentials, as faust's ``broker`` URL and
  ``broker_credentials``, and the same static membership.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from meterline.schemas import KafkaSettings

from .quirks import BrokerPolicy, policy_for

__all__ = ["KafkaClients"]

#: librdkafka logs at warning and above only: its info lines are per connection.
_LOG_LEVEL = 3


class KafkaClients:
    """The client factory of one process role (``gateway``, ``worker``, ``store`` ...)."""

    def __init__(self, kafka: KafkaSettings, *, role: str) -> None:
        self.kafka = kafka
        self.role = role
        self.policy: BrokerPolicy = policy_for(kafka)

    def base_config(self) -> dict[str, Any]:
        """Brokers, security and the client id: what every client of this role shares."""
        return {**self.kafka.as_librdkafka(), "client.id": f"meterline-{self.role}",
                "log_level": _LOG_LEVEL}

    def producer_config(self, **overrides: Any) -> dict[str, Any]:
        return {**self.base_config(), "acks": "all",
                "enable.idempotence": self.policy.idempotent_producers,
                "compression.type": "lz4", **overrides}

    def consumer_config(self, group_id: str, *, member: str = "", **overrides: Any
                        ) -> dict[str, Any]:
        """A manually committed consumer in ``group_id``.

        ``member`` names this process's member for static membership (on Kafka
        only): the same name after a restart is the same member.
        """
        session_ms = self.kafka.session_timeout_ms
        config: dict[str, Any] = {
            **self.base_config(), "group.id": group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": max(session_ms // 6, 250)}
        instance = self.instance_id(member) if member else None
        if instance:
            config["group.instance.id"] = instance
        return {**config, **overrides}

    def admin_config(self) -> dict[str, Any]:
        return self.base_config()

    def producer(self, **overrides: Any) -> Producer:
        return Producer(self.producer_config(**overrides))

    def consumer(self, group_id: str, *, member: str = "", **overrides: Any) -> Consumer:
        return Consumer(self.consumer_config(group_id, member=member, **overrides))

    def admin(self) -> AdminClient:
        return AdminClient(self.admin_config())

    def instance_id(self, member: str) -> str | None:
        """The static member id for ``member`` of this role, or None where the policy has none.

        ``kafka.group_instance_id`` when set (two processes of one role on one
        host must each set their own), else ``<host>-<role>-<member>``: stable
        across restarts of the same container or machine.
        """
        if not self.policy.static_membership:
            return None
        base = self.kafka.group_instance_id or f"{socket.gethostname()}-{self.role}"
        return f"{base}-{member}"

    def faust_options(self) -> dict[str, Any]:
        """The broker part of a ``faust.App``'s settings for this role."""
        options: dict[str, Any] = {"broker": self.kafka.as_faust_url()}
        credentials = self._faust_credentials()
        if credentials is not None:
            options["broker_credentials"] = credentials
        instance = self.instance_id("app")
        if instance:
            options["consumer_group_instance_id"] = instance
        return options

    def _faust_credentials(self) -> Any:
        import faust

        kafka = self.kafka
        context = self._ssl_context() if kafka.uses_tls else None
        if kafka.uses_sasl:
            password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
            return faust.SASLCredentials(username=kafka.sasl_username, password=password,
                                         mechanism=kafka.sasl_mechanism, ssl_context=context)
        if context is not None:
            return faust.SSLCredentials(context)
        return None

    def _ssl_context(self) -> ssl.SSLContext:
        kafka = self.kafka
        context = ssl.create_default_context(cafile=kafka.ssl_ca_location or None)
        context.check_hostname = kafka.ssl_check_hostname
        if kafka.ssl_certificate_location:
            password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
            context.load_cert_chain(kafka.ssl_certificate_location, kafka.ssl_key_location,
                                    password=password)
        return context
