"""Message text sealed for its trip through Kafka: AES-256-GCM, bound to its address.

The scan runs in the processors, off the request path, so message text must
travel from the gateway to them; sealed, it never sits readable in Kafka, in
the gateway's spool or in a broker's log segments. The key
(``egress.body_key``, base64 of 32 random bytes, from the environment) is
shared by the gateways and the processors only. The message hash is the
associated data: a sealed text cannot be replayed under another address.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SealError(ValueError):
    """The key is malformed, or a sealed text does not open with it."""


def new_key() -> str:
    """A fresh key, base64 (what ``meterline up`` hands its processes)."""
    return base64.b64encode(os.urandom(32)).decode()


class Sealer:
    def __init__(self, key_b64: str) -> None:
        try:
            key = base64.b64decode(key_b64, validate=True)
        except ValueError as exc:
            raise SealError("egress.body_key is not base64") from exc
        if len(key) != 32:
            raise SealError(f"egress.body_key must be 32 bytes (base64), not {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, text: str, address: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode(), address.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, address: str) -> str:
        try:
            raw = base64.b64decode(sealed, validate=True)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                      address.encode()).decode()
        except (ValueError, InvalidTag) as exc:
            raise SealError(f"message {address} does not open with this key") from exc
