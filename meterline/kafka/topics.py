"""Creating the deployment's topics, on either broker, through the seam's admin client."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from meterline.schemas import KafkaSettings

from .clients import KafkaClients
from .errors import kafka_errors, translate

log = logging.getLogger(__name__)


def create_topics(kafka: KafkaSettings | str, topics: Iterable[str], *, partitions: int,
                  replication_factor: int = 1, timeout_s: float = 15.0) -> None:
    """Create ``topics`` if missing. Idempotent: an existing topic is left as it is.

    ``kafka`` is the deployment's settings (TLS and SASL included), or a bare
    bootstrap string for a PLAINTEXT broker (the embedded one, tests). Raises
    ``BrokerUnavailable`` / ``BrokerRefused`` when the broker cannot or will not.
    """
    settings = (KafkaSettings(bootstrap_servers=kafka, embedded=False) if isinstance(kafka, str)
                else kafka)
    admin = KafkaClients(settings, role="admin").admin()
    with kafka_errors("listing topics"):
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
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
