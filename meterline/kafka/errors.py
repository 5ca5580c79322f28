"""Kafka's errors, translated once where they enter our code.

::

    BrokerError                 a Kafka client call failed
    ├── BrokerUnavailable       transient: no broker answered, a timeout, a leader moving;
    │                           back off and retry (the gateway spools meanwhile)
    └── BrokerRefused           permanent until someone acts: authentication,
                                authorization, a bad configuration; log loudly, do not spin

``kafka_errors(what)`` wraps one call (admin requests, commits, topic
creation) and raises ours, with ``what`` in the message so the log names the
step. The original exception is the ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import KafkaError, KafkaException

__all__ = ["BrokerError", "BrokerRefused", "BrokerUnavailable", "kafka_errors"]

#: librdkafka error codes that mean "ask again later".
_TRANSIENT = {
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
    KafkaError._MSG_TIMED_OUT, KafkaError._WAIT_COORD, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.NETWORK_EXCEPTION,
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError._RESOLVE,
}


class BrokerError(Exception):
    """A Kafka client call failed; ``code`` is librdkafka's error name when known."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class BrokerUnavailable(BrokerError):
    """Transient: retry with backoff."""


class BrokerRefused(BrokerError):
    """Permanent until an operator acts (credentials, ACLs, configuration)."""


def translate(exc: KafkaException, what: str) -> BrokerError:
    """Our error for one ``KafkaException`` raised while doing ``what``."""
    error = exc.args[0] if exc.args else None
    if not isinstance(error, KafkaError):
        return BrokerUnavailable(f"{what}: {exc}")
    kind = BrokerUnavailable if error.code() in _TRANSIENT or error.retriable() else BrokerRefused
    return kind(f"{what}: {error.str()}", error.name())


@contextmanager
def kafka_errors(what: str) -> Iterator[None]:
    """Raise ``BrokerUnavailable`` / ``BrokerRefused`` for a ``KafkaException`` in the block."""
    try:
        yield
    except KafkaException as exc:
        raise translate(exc, what) from exc
