"""``/admin/keys``: keys managed over HTTP by platform and team admins (docs/gateway.md).

    GET  /admin/keys                  {"keys": [...]}, never a hash; ?team= to narrow
    POST /admin/keys                  mint: 201 {"key": "ml-…", "id": …, …}, the key shown once
    POST /admin/keys/{id}/revoke      {"reason"?}: 200, the key's new state
    POST /admin/keys/{id}/rotate      {"grace"?: "24h"}: 200 {"key", "id", "old_valid_until", …}

The caller authenticates with its own virtual key (``Authorization: Bearer``),
which must be a usable admin key (every team) or team_admin key (its own team).
The operations are ``KeyService``'s, shared with the dashboard's Keys page;
this module only routes, reads JSON and writes it. Refusals are raised as
``GatewayError``s and rendered by the app in OpenAI's error shape. The app
reaches this by a prefix check behind the route lookup's miss, as it does
``/ui``, so proxied paths never pay for it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from meterline.governance.key_admin import Actor
from meterline.schemas import GatewaySettings

from .errors import BadRequest, MethodNotAllowed, NotFound
from .key_service import KeyService, describe
from .operations import send_bytes
from .relay import Receive, Send
from .request import parse_json_object, presented_key, read_body, request_headers

PREFIX = "/admin/keys"
_ACTIONS = ("revoke", "rotate")


def is_key_api(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _route(path: str) -> tuple[str, str]:
    """("", "") for the collection, (action, key id) for a key's action; else ``NotFound``."""
    rest = path[len(PREFIX):].strip("/")
    if not rest:
        return "", ""
    key_id, _, action = rest.partition("/")
    if action not in _ACTIONS:
        raise NotFound(f"Unsupported path {path}: use {PREFIX} or "
                       f"{PREFIX}/<key id>/{{{','.join(_ACTIONS)}}}.")
    return action, key_id


def _only(body: dict[str, Any], *allowed: str) -> dict[str, str]:
    """``body``'s text fields, refusing any not ``allowed``."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"Unknown field(s) {', '.join(unknown)}; this takes "
                         f"{', '.join(allowed) or 'none'}.", param=unknown[0])
    for name, value in body.items():
        if not isinstance(value, str):
            raise BadRequest(f"'{name}' must be a string.", param=name)
    return body


class KeyApi:
    """The ASGI handler of every path under ``/admin/keys``."""

    def __init__(self, service: KeyService, gateway: GatewaySettings) -> None:
        self.service = service
        self._gateway = gateway

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        action, key_id = _route(scope["path"])
        methods = ("GET", "POST") if not action else ("POST",)
        if scope["method"] not in methods:
            raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {scope['path']}; "
                                   f"use {', '.join(methods)}.")
        headers = request_headers(scope)
        actor = await self.service.authenticate(presented_key(headers))
        if scope["method"] == "GET":
            status, answer = 200, self._list(actor, scope)
        else:
            body = await self._body(headers, receive)
            status, answer = await self._change(actor, action, key_id, body)
        await send_bytes(send, status, orjson.dumps(answer))

    def _list(self, actor: Actor, scope: dict[str, Any]) -> dict[str, Any]:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        team = (query.get("team") or [""])[0]
        return {"keys": [describe(key) for key in self.service.visible(actor, team)]}

    async def _body(self, headers: dict[str, str], receive: Receive) -> dict[str, Any]:
        """The JSON object sent; none at all reads as ``{}`` (a revoke needs no reason)."""
        body = await read_body(headers, receive, self._gateway.max_body_bytes,
                               self._gateway.body_timeout_s)
        return parse_json_object(body) if body.strip() else {}

    async def _change(self, actor: Actor, action: str, key_id: str, body: dict[str, Any]
                      ) -> tuple[int, dict[str, Any]]:
        if not action:
            key, record = await self.service.mint(actor, body)
            return 201, {"key": key, **describe(record)}
        if action == "revoke":
            reason = _only(body, "reason").get("reason", "")
            return 200, describe(await self.service.revoke(actor, key_id, reason))
        grace = _only(body, "grace").get("grace", "")
        key, successor, old = await self.service.rotate(actor, key_id, grace)
        return 200, {"key": key, **describe(successor), "old_id": old.id,
                     "old_valid_until": old.expires_at}
