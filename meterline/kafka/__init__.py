"""The one Kafka seam every stage uses.

- ``KafkaClients``: every producer, consumer, admin client and faust app is
  configured here, from ``KafkaSettings`` (brokers, TLS, SASL, client ids,
  static membership).
- ``policy_for`` / ``BrokerPolicy``: the embedded broker's workarounds, on
  only when ``kafka.embedded``; Apache Kafka runs none of them.
- ``kafka_errors``: Kafka's exceptions translated into ``BrokerError``s at
  the edge.
- ``create_topics``: the deployment's topics, idempotently, on either broker.
- ``TopicSource``: the batch consumer of every loop (sinks, enrichment) that
  commits only in the log it read.
- ``incarnation``: topic ids (KIP-516), how the embedded policy notices a
  broker that came back empty.

Group ids and topic names are part of the contract and live in
``meterline.schemas`` (``Groups``, ``Topics``).
"""

from .clients import KafkaClients
from .errors import BrokerError, BrokerRefused, BrokerUnavailable, kafka_errors
from .quirks import APACHE_KAFKA, EMBEDDED, BrokerPolicy, policy_for
from .source import BatchLimits, TopicSource
from .topics import create_registry_topic, create_topics

__all__ = ["APACHE_KAFKA", "EMBEDDED", "BatchLimits", "BrokerError", "BrokerPolicy",
           "BrokerRefused", "BrokerUnavailable", "KafkaClients", "TopicSource",
           "create_registry_topic", "create_topics", "kafka_errors", "policy_for"]
