"""A request body as its messages, each with a content address.

Coding agents resend the whole conversation on every turn: turn 40 of a
Claude Code session carries the system prompt, 39 earlier turns and one new
message. Addressed by content, each message is sent to the scan, scanned and
stored once, however many calls repeat it; the envelope carries only the
addresses (``BodyAudit.request_messages``).

The address is the SHA-256 (first 128 bits, hex) of the message's canonical
JSON (sorted keys, no whitespace), so the same message hashes the same in
every call and every gateway process, whatever the client's key order.

What a message is, per API surface:

- ``openai.chat``: each of ``messages`` (tool calls and results included);
- ``openai.responses``: ``instructions``, then ``input`` (a string, or each item);
- ``anthropic.messages``: ``system`` (a string, or its blocks as one message),
  then each of ``messages``;
- ``openai.embeddings``: ``input`` (a string, or each string or token list);
- ``anthropic.count_tokens`` as ``anthropic.messages``; other surfaces have none.

``text`` is what the scan reads: every string in the message (text parts,
tool inputs and results), joined by newlines, in document order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from meterline.schemas import Surface


@dataclass(frozen=True, slots=True)
class RequestMessage:
    index: int
    role: str
    message_hash: str
    text: str


def message_hash(message: Any) -> str:
    """The content address of one message (any JSON value).

    Anthropic's ``cache_control`` marks are left out: Claude Code moves its
    cache marker to the newest message every turn, and with the mark in the
    address that message would be stored and scanned twice (measured: 13-16%
    more distinct messages on a simulated month, bench/audit_storage_bench.py).
    """
    canonical = orjson.dumps(message, option=orjson.OPT_SORT_KEYS)
    if b'"cache_control"' in canonical:
        canonical = orjson.dumps(_without_cache_marks(message), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def _without_cache_marks(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_cache_marks(item) for key, item in value.items()
                if key != "cache_control"}
    if isinstance(value, list):
        return [_without_cache_marks(item) for item in value]
    return value


def _strings(value: Any, skip_keys: frozenset[str] = frozenset({"type", "role", "id",
                                                                  "tool_use_id", "cache_control",
                                                                  "call_id"})) -> Iterator[str]:
    """Every string in ``value``, depth first, except structural keys' values."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in skip_keys:
                yield from _strings(item, skip_keys)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, skip_keys)


def _items(surface: Surface, payload: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(role, message) pairs of a request, in order."""
    if surface in ("anthropic.messages", "anthropic.count_tokens"):
        system = payload.get("system")
        if system:
            yield "system", system
        yield from _roled(payload.get("messages"))
    elif surface == "openai.chat":
        yield from _roled(payload.get("messages"))
    elif surface == "openai.responses":
        instructions = payload.get("instructions")
        if instructions:
            yield "system", instructions
        items = payload.get("input")
        if isinstance(items, str):
            yield "user", items
        else:
            yield from _roled(items)
    elif surface == "openai.embeddings":
        items = payload.get("input")
        for item in items if isinstance(items, list) and items and not isinstance(
                items[0], int) else [items]:
            if item:
                yield "input", item


def _roled(messages: Any) -> Iterator[tuple[str, Any]]:
    if not isinstance(messages, list):
        return
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        yield (role if isinstance(role, str) else "item"), message


def request_messages(surface: Surface, payload: dict[str, Any]) -> list[RequestMessage]:
    """The request's messages in order, each with its address and scannable text."""
    return [RequestMessage(index, role[:32], message_hash(message),
                           "\n".join(_strings(message)))
            for index, (role, message) in enumerate(_items(surface, payload))]
