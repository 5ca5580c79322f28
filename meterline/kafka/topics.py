"""Creating the deployment's topics, on either broker, through the seam's admin client."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from meterline.schemas import KafkaSettings, Topics

from .clients import KafkaClients
from .errors import kafka_errors, translate

log = logging.getLogger(__name__)


def create_topics(kafka: KafkaSettings | str, topics: Iterable[str], *, partitions: int,
                  replication_factor: int = 1, timeout_s: float = 15.0,
                  config: Mapping[str, str] | None = None) -> None:
    """Create ``topics`` if missing. Idempotent: an existing topic is left as it is.

    ``config`` applies to every topic created (e.g. ``cleanup.policy=compact``).

    ``kafka`` is the deployment's settings (TLS and SASL included), or a bare
    bootstrap string for a PLAINTEXT broker (the embedded one, tests). Raises
    ``BrokerUnavailable`` / ``BrokerRefused`` when the broker cannot or will not.
    """
    settings = (KafkaSettings(bootstrap_servers=kafka, embedded=False) if isinstance(kafka, str)
                else kafka)
    admin = KafkaClients(settings, role="admin").admin()
    with kafka_errors("listing topics"):
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                       config=dict(config or {}))
              for name in topics if name not in existing]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                continue
            raise translate(exc, f"creating topic {name}") from exc
        log.info("created topic %s with %d partitions", name, partitions)


def create_registry_topic(kafka: KafkaSettings, timeout_s: float = 15.0) -> None:
    """Create the key registry's compacted, single-partition topic if missing (``Topics.keys``).

    ``init`` and ``up`` call it with the other topics; whoever publishes a key
    event calls it first too, so a deployment created before the registry existed
    gets the topic on its first key change.
    """
    name, config = Topics(kafka.topic_prefix).registry_topic
    create_topics(kafka, [name], partitions=1, replication_factor=kafka.replication_factor,
                  timeout_s=timeout_s, config=config)
