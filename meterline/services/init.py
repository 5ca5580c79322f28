"""``meterline init``: prepare a scale-out deployment (topics and ClickHouse schema).

With the embedded parts ``up`` does this itself. Against Apache Kafka and a
ClickHouse server (docker-compose), ``init`` runs once before the roles start:
it creates the topics with the configured partitions and applies the schema
migrations. Both steps are idempotent, so running it on every deploy is safe.
"""

from __future__ import annotations

import logging

from meterline.kafka import create_registry_topic, create_topics
from meterline.schemas import Settings, Topics

log = logging.getLogger(__name__)


def run_init(settings: Settings) -> int:
    from meterline.sinks import connect, migrate

    names = Topics(settings.kafka.topic_prefix).all()
    create_topics(settings.kafka, names, partitions=settings.kafka.partitions,
                  replication_factor=settings.kafka.replication_factor, timeout_s=60)
    create_registry_topic(settings.kafka, timeout_s=60)
    log.info("topics ready: %s, %s", ", ".join(names), Topics(settings.kafka.topic_prefix).keys)
    if settings.clickhouse.embedded:
        log.info("ClickHouse is embedded: the store applies migrations when it starts")
        return 0
    applied = migrate(connect(settings.clickhouse), settings.clickhouse)
    log.info("ClickHouse schema ready (%d migrations applied now)", len(applied))
    return 0
