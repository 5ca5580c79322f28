"""The broker section of ``Settings``: where Kafka is, how to reach it, which kind it is.

Apart from ``settings`` because it is the one section with its own security
surface (TLS, SASL) and its own consumers: ``meterline.kafka`` turns it into
every client's configuration.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(_Section):
    """Where the broker is, how to reach it, and which kind it is.

    ``embedded`` means the broker is the single-machine tansu (memory storage)
    that ``meterline up`` starts on loopback: it turns on the embedded-broker
    policy (``meterline.kafka.quirks``). Against Apache Kafka (``false``) none of
    that runs.

    Security, for production clusters: ``security_protocol`` SSL / SASL_SSL
    (TLS, with ``ssl_ca_location`` and, for mTLS, ``ssl_certificate_location``
    and ``ssl_key_location``) and SASL_PLAINTEXT / SASL_SSL with
    ``sasl_mechanism`` PLAIN or SCRAM-SHA-256/512. Secrets come from the
    environment only: ``METERLINE_KAFKA__SASL_PASSWORD``,
    ``METERLINE_KAFKA__SSL_KEY_PASSWORD``. ``meterline.kafka.clients`` turns
    all of it into librdkafka and faust configuration, for every client.
    """

    embedded: bool = True
    bootstrap_servers: str = "127.0.0.1:19092"
    topic_prefix: str = "meterline"
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    #: Short session timeout: tansu (and a single worker) rejoin in seconds, not 45 s.
    session_timeout_ms: int = Field(6000, ge=1000)
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: SecretStr | None = None
    #: PEM files: the CA that signed the brokers' certificates; this client's certificate
    #: and key for mutual TLS.
    ssl_ca_location: str = ""
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""
    ssl_key_password: SecretStr | None = None
    #: Verify that the broker's certificate names the host connected to.
    ssl_check_hostname: bool = True
    #: Static group membership (KIP-345) on Apache Kafka: a restarted worker takes its
    #: old member's place at once instead of waiting out its session. Empty: derived
    #: from the host name and role; set it when two workers share a host.
    group_instance_id: str = ""

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        if self.uses_sasl and not self.sasl_username:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username")
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise ValueError("mutual TLS needs both ssl_certificate_location and ssl_key_location")
        if self.embedded and self.security_protocol != "PLAINTEXT":
            raise ValueError("the embedded broker listens on loopback in PLAINTEXT only")
        return self

    def as_librdkafka(self) -> dict[str, str | int | bool]:
        """The dotted librdkafka configuration every client shares: where, and how securely.

        Only ``meterline.kafka.clients`` should call this; it adds each role's own settings.
        """
        config: dict[str, str | int | bool] = {"bootstrap.servers": self.bootstrap_servers,
                                               "security.protocol": self.security_protocol}
        if self.uses_sasl:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = (self.sasl_password.get_secret_value()
                                       if self.sasl_password else "")
        if self.uses_tls:
            for key, value in (("ssl.ca.location", self.ssl_ca_location),
                               ("ssl.certificate.location", self.ssl_certificate_location),
                               ("ssl.key.location", self.ssl_key_location)):
                if value:
                    config[key] = value
            if self.ssl_key_password is not None:
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            config["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none")
        return config

    def as_faust_url(self) -> str:
        return ";".join(f"kafka://{hostport}" for hostport in self.bootstrap_servers.split(","))
