"""Usage estimates for calls whose provider usage never arrived.

Used only off the hot path: when a successful response carried no usage, or a
stream ended (cut, timed out, or left by the client) before its usage event.
The estimate is about four characters per token of request and response
text, and the envelope says ``source="estimated"``, so an estimate is never
mistaken for a provider's figure. It is ``missing`` only when there is no text
at all to estimate from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

CHARS_PER_TOKEN = 4

#: Keys whose string values are prompt text in a request body.
_REQUEST_TEXT_KEYS = frozenset({"content", "text", "input", "instructions", "system", "prompt",
                                "arguments", "description"})
#: Keys whose string values are generated text in a response body or stream event.
_RESPONSE_TEXT_KEYS = frozenset({"content", "text", "arguments", "thinking", "refusal",
                                 "partial_json", "delta", "reasoning_content"})
#: Stream events that repeat text already counted from their deltas.
_REPEATING_EVENTS = ("done", "completed", "created", "in_progress", "message_start")


def tokens_for(chars: int) -> int:
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _text_chars(value: Any, keys: frozenset[str], key: str = "") -> int:
    if isinstance(value, str):
        return len(value) if key in keys else 0
    if isinstance(value, dict):
        return sum(_text_chars(item, keys, name) for name, item in value.items())
    if isinstance(value, list):
        # a list under a text key ("content": [parts]) keeps the key for its strings
        return sum(_text_chars(item, keys, key) for item in value)
    return 0


def request_chars(payload: dict[str, Any] | None) -> int:
    """Characters of prompt text in a parsed request body."""
    return _text_chars(payload, _REQUEST_TEXT_KEYS) if payload else 0


def response_chars(body: Any) -> int:
    """Characters of generated text in a parsed (whole) response body."""
    return _text_chars(body, _RESPONSE_TEXT_KEYS)


def stream_chars(events: Iterable[bytes]) -> int:
    """Characters of generated text in raw SSE events, counting each delta once."""
    total = 0
    for event in events:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            try:
                data = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            kind = str(data.get("type") or "")
            if kind.endswith(_REPEATING_EVENTS):
                continue
            total += _text_chars(data, _RESPONSE_TEXT_KEYS)
    return total
