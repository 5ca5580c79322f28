"""Single-machine infrastructure: the embedded broker, the process supervisor, and the
topic-id check every consumer runs because that broker comes back empty."""

from meterline.kafka.incarnation import BrokerUnreachable, TopicIncarnations, topic_identity
from meterline.kafka.topics import create_topics  # here too: the tests and tools use it

from .broker import EmbeddedBroker, free_port, stop_process, wait_for_port
from .supervisor import ManagedProcess, Supervisor

__all__ = [
    "BrokerUnreachable",
    "EmbeddedBroker",
    "ManagedProcess",
    "Supervisor",
    "TopicIncarnations",
    "create_topics",
    "free_port",
    "stop_process",
    "topic_identity",
    "wait_for_port",
]
