"""The request side of a call: headers, credentials, the bounded body, its JSON.

Everything here works on the raw ASGI scope and ``receive`` (no request
object), because it runs on every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .errors import BadRequest, BodyTooLarge, RequestTimeout

Receive = Callable[[], Awaitable[dict[str, Any]]]


class ClientGone(Exception):
    """The client disconnected before its request body arrived; nothing to answer."""


def request_headers(scope: dict[str, Any]) -> dict[str, str]:
    """The request headers, names lower-cased (as ASGI servers deliver them)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def presented_key(headers: dict[str, str]) -> str | None:
    """The key as OpenAI clients (Bearer) or Anthropic clients (x-api-key) send it."""
    header = headers.get("authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return headers.get("x-api-key") or headers.get("api-key")


def _too_large(size: int, limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"Request body of {size} bytes exceeds the gateway limit of {limit} bytes.")


async def read_body(headers: dict[str, str], receive: Receive, limit: int,
                    timeout_s: float = 30.0) -> bytes:
    """The whole request body, refused with ``BodyTooLarge`` past ``limit`` bytes.

    A declared ``content-length`` over the limit is refused before reading;
    a chunked body is counted as it arrives, so an oversize upload is never
    held in memory whole. A body still incomplete after ``timeout_s`` is
    refused with ``RequestTimeout`` (408): a client trickling bytes (slowloris)
    holds its connection for a bounded time only.
    """
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    try:
        async with asyncio.timeout(timeout_s):
            return await _receive_body(receive, limit)
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {timeout_s:g} s; "
                             "send it at once.") from None


async def _receive_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise _too_large(len(body), limit)
        return body
    parts, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"We could not parse the JSON body of your request: {exc}.") from exc
    if not isinstance(payload, dict):
        raise BadRequest("The request body must be a JSON object.")
    return payload


def requested_model(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", param="model")
    return model


def ask_for_stream_usage(payload: dict[str, Any]) -> bool:
    """Make a streamed chat completion report usage; True if the client had not asked.

    OpenAI-style servers only send usage on a stream when
    ``stream_options.include_usage`` is set; without it the call could only
    be estimated. The caller strips the extra chunk when this returns True.
    """
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    payload["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}
    return True
