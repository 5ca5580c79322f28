"""Single-machine infrastructure: the embedded broker and the process supervisor."""

from .broker import EmbeddedBroker, create_topics, free_port, wait_for_port
from .supervisor import ManagedProcess, Supervisor

__all__ = [
    "EmbeddedBroker",
    "ManagedProcess",
    "Supervisor",
    "create_topics",
    "free_port",
    "wait_for_port",
]
