"""The one Kafka seam every stage uses.

- ``KafkaClients``: every producer, consumer, admin client and faust app is
  configured here, from ``KafkaSettings`` (brokers, TLS, SASL, client ids,
  static membership).
- ``policy_for`` / ``BrokerPolicy``: the embedded broker's workarounds, on
  only when ``kafka.embedded``; Apache Kafka runs none of them.
- ``kafka_errors``: Kafka's exceptions translated into ``BrokerError``s at
  the edge.
- ``create_topics``: the deployment's topics, idempotently, on either broker.

Group ids and topic names are part of the contract and live in
``meterline.schemas`` (``Groups``, ``Topics``).
"""

from .clients import KafkaClients
from .errors import BrokerError, BrokerRefused, BrokerUnavailable, kafka_errors
from .quirks import APACHE_KAFKA, EMBEDDED, BrokerPolicy, policy_for
from .topics import create_topics

__all__ = ["APACHE_KAFKA", "EMBEDDED", "BrokerError", "BrokerPolicy", "BrokerRefused",
           "BrokerUnavailable", "KafkaClients", "create_topics", "kafka_errors", "policy_for"]
