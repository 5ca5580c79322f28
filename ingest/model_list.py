"""``GET /v1/models``: the upstream's list plus the gateway's own aliases.

Decision: the list a client sees is what the surface's default provider lists
(OpenAI's format, or Anthropic's when the request carries
``anthropic-version``), with every alias from ``settings.models`` that the
upstream does not already list appended (``owned_by: meterline``). With no
aliases the upstream answer passes through byte for byte, error or not. If
the upstream cannot be reached in ``gateway.models_list_timeout_s`` and
aliases exist, the aliases alone are listed, so a client configured against
the gateway can still discover what it may call.
"""

from __future__ import annotations

from typing import Any

import orjson


def _alias_entry(name: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "model", "id": name, "display_name": name,
                "created_at": "1970-01-01T00:00:00Z"}
    return {"id": name, "object": "model", "created": 0, "owned_by": "meterline"}


def merged_list(upstream_status: int | None, upstream_body: bytes, aliases: list[str],
                anthropic: bool) -> tuple[int, bytes] | None:
    """(status, body) to answer with, or None to pass the upstream answer through."""
    if not aliases:
        return None
    listed: list[dict[str, Any]] = []
    if upstream_status == 200:
        try:
            parsed = orjson.loads(upstream_body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("data"), list):
            listed = [item for item in parsed["data"] if isinstance(item, dict)]
    known = {item.get("id") for item in listed}
    listed += [_alias_entry(name, anthropic) for name in aliases if name not in known]
    if anthropic:
        body: dict[str, Any] = {"data": listed, "has_more": False,
                                "first_id": listed[0]["id"] if listed else None,
                                "last_id": listed[-1]["id"] if listed else None}
    else:
        body = {"object": "list", "data": listed}
    return 200, orjson.dumps(body)
