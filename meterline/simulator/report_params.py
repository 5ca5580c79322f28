"""Query parameters, paging, grouping and exact JSON of the simulated report APIs.

Both providers' report endpoints (``reports_api``) read their parameters the
same way: integer and RFC 3339 bounds, repeated or comma-separated
``group_by``, and a page cursor over aligned buckets. A parameter the
provider would refuse raises ``BadParam`` (answered 400). ``decimal_json``
writes each ``Decimal`` as a JSON number with all its digits.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request

from .served import Group, Tally

WIDTHS = {"1d": 86_400, "1h": 3_600}
#: (default, maximum) buckets per page, as both providers document them.
LIMITS = {"1d": (7, 31), "1h": (24, 168)}
GETTERS: dict[str, Callable[[Group], Any]] = {
    "project_id": lambda g: g.scope, "workspace_id": lambda g: g.scope,
    "api_key_id": lambda g: g.api_key_id, "model": lambda g: g.model,
    "user_id": lambda g: None, "batch": lambda g: False,
    "context_window": lambda g: g.context_window,
    "service_tier": lambda g: g.service_tier or ("standard" if g.kind == "anthropic"
                                                   else "default")}
OPENAI_GROUPS = {"completions": ("project_id", "user_id", "api_key_id", "model", "batch",
                                  "service_tier"),
                  "embeddings": ("project_id", "user_id", "api_key_id", "model")}
ANTHROPIC_GROUPS = ("api_key_id", "workspace_id", "model", "service_tier", "context_window")
#: Anthropic cost token types: (token_type, description label, tally cost attribute, tokens).
TOKEN_TYPES = (
    ("uncached_input_tokens", "Input Tokens", "input_cost", "input_tokens"),
    ("output_tokens", "Output Tokens", "output_cost", "output_tokens"),
    ("cache_read_input_tokens", "Cache Read Input Tokens", "cache_read_cost",
     "cache_read_tokens"),
    ("cache_creation.ephemeral_5m_input_tokens", "5m Cache Write Input Tokens",
     "cache_write_5m_cost", "cache_write_5m_tokens"),
    ("cache_creation.ephemeral_1h_input_tokens", "1h Cache Write Input Tokens",
     "cache_write_1h_cost", "cache_write_1h_tokens"))


class BadParam(ValueError):
    """A query parameter the provider would refuse (400)."""


def int_param(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadParam(f"{name}: is required")
        return default
    if not raw.isdigit():
        raise BadParam(f"{name}: must be a non-negative integer, got {raw!r}")
    return int(raw)


def rfc3339(request: Request, name: str, required: bool) -> int | None:
    raw = request.query_params.get(name)
    if not raw:
        if required:
            raise BadParam(f"{name}: is required")
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BadParam(f"{name}: not an RFC 3339 time: {raw!r}") from None
    if when.tzinfo is None:
        raise BadParam(f"{name}: needs a UTC offset (e.g. Z): {raw!r}")
    return int(when.timestamp())


def iso(epoch: int) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%dT%H:%M:%SZ}"


def group_by(request: Request, allowed: Sequence[str]) -> list[str]:
    values = request.query_params.getlist("group_by") + request.query_params.getlist("group_by[]")
    dims = [part.strip() for value in values for part in value.split(",") if part.strip()]
    for dim in dims:
        if dim not in allowed:
            raise BadParam(f"group_by: {dim!r} is not one of {', '.join(allowed)}")
    return list(dict.fromkeys(dims))


def page(request: Request, start: int, end: int | None, width_name: str,
          max_limit: int | None = None) -> tuple[int, int, int, int | None]:
    """(width, page start, page end, next page start or None)."""
    if width_name not in WIDTHS:
        raise BadParam(f"bucket_width: must be one of {', '.join(WIDTHS)}, got {width_name!r}")
    width = WIDTHS[width_name]
    default, maximum = LIMITS[width_name]
    maximum = max_limit or maximum
    limit = int_param(request, "limit", default)
    if not 1 <= limit <= maximum:
        raise BadParam(f"limit: must be between 1 and {maximum} for {width_name}, got {limit}")
    first = start // width * width
    if end is None:
        end = -(-int(datetime.now(UTC).timestamp()) // width) * width
    if end <= start:
        raise BadParam("the end of the range must be after its start")
    cursor = request.query_params.get("page")
    current = first
    if cursor:
        try:
            current = int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("b:"))
        except ValueError:
            raise BadParam(f"page: {cursor!r} is not a page cursor of this report") from None
        if not first <= current < end or (current - first) % width:
            raise BadParam(f"page: {cursor!r} is not a page cursor of this report")
    stop = min(end, current + limit * width)
    return width, current, stop, stop if stop < end else None


def cursor(start: int | None) -> str | None:
    return None if start is None else base64.urlsafe_b64encode(f"b:{start}".encode()).decode()


def grouped(tallies: Mapping[Group, Tally], dims: Sequence[str]
             ) -> list[tuple[dict[str, Any], Tally]]:
    merged: dict[tuple[Any, ...], Tally] = {}
    for group, tally in tallies.items():
        key = tuple(GETTERS[dim](group) for dim in dims)
        merged.setdefault(key, Tally()).add(tally)
    return [(dict(zip(dims, key, strict=True)), merged[key])
            for key in sorted(merged, key=lambda k: tuple(str(v) for v in k))]


def fields(names: Sequence[str], values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: values.get(name) for name in names}


def decimal_json(data: Any) -> bytes:
    """JSON with each ``Decimal`` written as a number with all its digits (not via float)."""
    mark = secrets.token_hex(6)

    def default(value: Any) -> str:
        if isinstance(value, Decimal):
            return f"{mark}{value:f}"
        raise TypeError(type(value).__name__)

    encoded = orjson.dumps(data, default=default)
    return re.sub(rb'"' + mark.encode() + rb'(-?[0-9]+(?:\.[0-9]+)?)"', rb"\1", encoded)


def dollars(value: Decimal) -> Decimal:
    return value.normalize() if value else Decimal(0)
