"""Gateway errors, rendered in the caller's own API error format.

    GatewayError                 base; never raised itself
    ├── BadRequest          400  body is not JSON, or misses a required field
    │   └── Untranslatable  400  a field the serving target's API shape cannot express
    ├── Unauthenticated     401  no key, or a key we do not know
    │   ├── KeyRevoked      401  the key was revoked (the envelope records the call)
    │   └── KeyExpired      401  the key's expiry (or rotation grace) has passed
    ├── Forbidden           403  the key may not use this route
    │   ├── PolicyRefused   403  an egress rule in enforce mode forbids this call
    │   └── ModelNotAllowed 403  the key may not call this provider or model
    ├── RateLimited         429  over a requests- or tokens-per-minute limit; retry-after
    ├── BudgetExceeded  429/400  a budget in ``block`` mode is spent (OpenAI's
    │                            insufficient_quota; Anthropic's 400, as for no credit)
    ├── NotFound            404  unsupported path
    │   └── UnknownModel    404  model not routed (gateway.allow_unlisted_models off)
    ├── MethodNotAllowed    405  known path, wrong method
    ├── RequestTimeout      408  body not received within gateway.body_timeout_s
    ├── BodyTooLarge        413  request body over gateway.max_body_bytes
    ├── InternalError       500  a bug in the gateway; logged with its request id
    ├── EnforcementUnavailable 503  the ledger could not be asked (fail-closed)
    ├── RegistryUnavailable 503  the key registry's broker did not take a key change
    ├── UpstreamUnavailable 502  the provider could not be reached
    ├── UntranslatableAnswer 502 the provider answered what the caller's API shape cannot carry
    └── UpstreamTimeout     504  the provider did not answer in time

``upstream_errors`` is the one place aiohttp's exceptions become ours.

Errors the provider itself returns are *not* GatewayErrors: they pass through
to the client byte for byte. ``render`` turns one of ours into the OpenAI
shape ``{"error": {"message", "type", "param", "code"}}`` or the Anthropic
shape ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import aiohttp
import orjson

ApiStyle = Literal["openai", "anthropic"]


class GatewayError(Exception):
    status = 500
    openai_type = "server_error"
    anthropic_type = "api_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        #: Set once the call has an envelope, so the refusal can name it.
        self.request_id = ""
        #: Extra response headers (``retry-after``), as ASGI pairs.
        self.headers: tuple[tuple[bytes, bytes], ...] = ()

    def status_for(self, style: ApiStyle) -> int:
        """The HTTP status in ``style``; the same for both but where the providers differ."""
        return self.status

    @property
    def error_class(self) -> str:
        """What the envelope of a refused call records as its ``error_class``."""
        return type(self).__name__

    def render(self, style: ApiStyle) -> bytes:
        if style == "anthropic":
            return orjson.dumps(
                {"type": "error", "error": {"type": self.anthropic_type, "message": self.message}}
            )
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.openai_type,
                       "param": self.param, "code": self.code}}
        )


class BadRequest(GatewayError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class Untranslatable(BadRequest):
    """The call's target speaks the other API shape, and ``field`` has no counterpart there
    (``ingest/translate``): refused rather than dropped, before anything leaves."""

    code = "untranslatable_field"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, param=field)
        self.field = field

    @property
    def error_class(self) -> str:
        return f"Untranslatable:{self.field}"


class Unauthenticated(GatewayError):
    status = 401
    openai_type = "invalid_request_error"
    anthropic_type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    openai_type = "invalid_request_error"
    anthropic_type = "permission_error"
    code = "forbidden"


class PolicyRefused(Forbidden):
    """Refused before it left: the message names the rule and what to do instead."""

    code = "policy_violation"


class KeyRevoked(Unauthenticated):
    code = "key_revoked"


class KeyExpired(Unauthenticated):
    code = "key_expired"


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"


class RateLimited(GatewayError):
    """Over a per-minute limit; ``retry_after_s`` is when the window frees enough."""

    status = 429
    openai_type = "requests"
    anthropic_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, tokens: bool = False) -> None:
        super().__init__(message)
        if tokens:
            self.openai_type = "tokens"
        self.retry_after_s = retry_after_s
        self.headers = ((b"retry-after", str(retry_after_s).encode()),)


class BudgetExceeded(GatewayError):
    """A ``block`` budget is spent. OpenAI answers this 429 ``insufficient_quota`` (which its
    tools do not retry); Anthropic answers a spent credit balance with 400."""

    status = 429
    openai_type = "insufficient_quota"
    anthropic_type = "invalid_request_error"
    code = "insufficient_quota"

    def status_for(self, style: ApiStyle) -> int:
        return 400 if style == "anthropic" else 429


class NotFound(GatewayError):
    status = 404
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    code = "not_found"


class UnknownModel(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "method_not_allowed"


class InternalError(GatewayError):
    status = 500
    openai_type = "server_error"
    anthropic_type = "api_error"
    code = "internal_error"


class RequestTimeout(GatewayError):
    status = 408
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "request_timeout"


class BodyTooLarge(GatewayError):
    status = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"
    code = "request_too_large"


class EnforcementUnavailable(GatewayError):
    status = 503
    openai_type = "server_error"
    anthropic_type = "api_error"
    code = "enforcement_unavailable"


class RegistryUnavailable(GatewayError):
    """A key change (``/admin/keys``, the dashboard) the registry's broker did not confirm."""

    status = 503
    openai_type = "server_error"
    anthropic_type = "api_error"
    code = "registry_unavailable"


class UpstreamUnavailable(GatewayError):
    status = 502
    openai_type = "server_error"
    anthropic_type = "api_error"
    code = "upstream_unavailable"


class UntranslatableAnswer(GatewayError):
    """A target of the other API shape answered something the caller's shape cannot carry
    (``ingest/translate``): an OpenAI tool call whose arguments are not a JSON object, for
    an Anthropic caller. The provider has billed the call, so its envelope keeps the usage."""

    status = 502
    openai_type = "server_error"
    anthropic_type = "api_error"
    code = "untranslatable_answer"


class UpstreamTimeout(GatewayError):
    status = 504
    openai_type = "server_error"
    anthropic_type = "timeout_error"
    code = "upstream_timeout"


@contextmanager
def upstream_errors(provider: str, *, mid_response: bool = False) -> Iterator[None]:
    """Turn aiohttp's connection and timeout errors into ``UpstreamTimeout`` / ``UpstreamUnavailable``.

    Timeouts are tested first: aiohttp's ``ServerTimeoutError`` is both a
    ``TimeoutError`` and a ``ClientError``, and a slow provider must read as
    a timeout (504), not as unreachable (502).
    """
    try:
        yield
    except TimeoutError as exc:
        where = "stopped answering mid-response" if mid_response else "did not answer in time"
        raise UpstreamTimeout(f"The upstream provider '{provider}' {where}.") from exc
    except aiohttp.ClientError as exc:
        where = "failed mid-response" if mid_response else "could not be reached"
        raise UpstreamUnavailable(
            f"The upstream provider '{provider}' {where}: {type(exc).__name__}.") from exc
