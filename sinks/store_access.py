"""Who may call the store endpoint: two service credentials, compared in constant time.

``StoreAccess.role_of`` answers the role an ``Authorization`` header proves
(``"operator"``, ``"read"``) or None. Both tokens are compared on every call
with ``hmac.compare_digest``, whatever the header holds, so neither the
comparison nor the order of the checks tells a caller how close a guess was.

``StoreAccess.for_store`` is how the store process gets its credentials: the
configured tokens (environment; ``meterline up`` passes the pair it generated).
A store started without them generates a fresh pair on every start and writes
the token files (``schemas.store_auth``), so the endpoint is never open (fail
closed), local clients still find them, and a token from an earlier start is
refused. The tokens themselves are never logged.
"""

from __future__ import annotations

import hmac
import logging

from meterline.schemas import Settings
from meterline.schemas.store_auth import StoreRole, new_token, write_token_file

log = logging.getLogger(__name__)


class StoreAccess:
    """The store's two credentials; ``role_of`` is safe to call from any thread."""

    def __init__(self, *, read_token: str, operator_token: str) -> None:
        if not read_token or not operator_token:
            raise ValueError("both store tokens must be set")
        if hmac.compare_digest(read_token.encode(), operator_token.encode()):
            raise ValueError("the read and operator tokens must differ: the read token must not "
                             "run jobs")
        self._tokens: tuple[tuple[StoreRole, bytes], ...] = (
            ("operator", operator_token.encode()), ("read", read_token.encode()))

    def role_of(self, authorization: str | None) -> StoreRole | None:
        """The role the header's bearer token proves, or None (missing, malformed or wrong)."""
        scheme, _, presented = (authorization or "").partition(" ")
        candidate = presented.strip().encode() if scheme.lower() == "bearer" else b""
        found: StoreRole | None = None
        for role, token in self._tokens:
            if hmac.compare_digest(candidate, token) and found is None:
                found = role
        return found

    @classmethod
    def for_store(cls, settings: Settings) -> StoreAccess:
        """The store's credentials: configured, else a fresh pair written to the token files."""
        tokens: dict[StoreRole, str] = {}
        for role in ("read", "operator"):
            configured = (settings.store.operator_token if role == "operator"
                          else settings.store.read_token)
            if configured is not None:
                tokens[role] = configured.get_secret_value()
                log.info("store %s credential from the environment", role)
                continue
            tokens[role] = new_token()
            path = write_token_file(settings.data_dir, role, tokens[role])
            log.warning("store.%s_token is not set: generated one for this start in %s (0600)",
                        role, path)
        return cls(read_token=tokens["read"], operator_token=tokens["operator"])
