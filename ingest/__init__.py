"""ingest: the gateway. Knows HTTP and Kafka, never ClickHouse.

Public surface: ``create_app`` (the ASGI app), ``mint_key`` (for the CLI),
``EnvelopeEmitter`` and the error tree.
"""

from .app import SURFACES, create_app
from .auth import KeyRing, hash_key, mint_key
from .emitter import EnvelopeEmitter
from .errors import GatewayError

__all__ = ["SURFACES", "EnvelopeEmitter", "GatewayError", "KeyRing", "create_app", "hash_key",
           "mint_key"]
