"""Deterministic text, token counts, ids and SSE framing shared by the simulated APIs.

Everything here is a pure function of its input, so a call made directly to
the simulator and the same call made through the gateway answer byte for byte
alike (the end-to-end tests compare them).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_WORDS = ("the", "gateway", "records", "each", "call", "and", "its", "cost", "so", "teams",
          "see", "what", "they", "spend", "on", "models", "every", "month", "with", "care")

#: A fixed epoch for ``created`` fields: wall-clock time would make two
#: identical calls differ, and the tests compare direct and proxied answers.
_EPOCH_S = 1_767_225_600


def estimate_tokens(text: str) -> int:
    """About four characters per token, at least one."""
    return max(1, (len(text) + 3) // 4)


def text_of(content: Any) -> str:
    """The text in a message ``content``: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(text_of(part.get("text", "") or part.get("content", "")))
            else:
                parts.append(str(part))
        return " ".join(parts)
    return ""


def seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def answer(prompt: str, max_tokens: int) -> str:
    """A sentence derived from the prompt: same prompt, same answer."""
    seed = seed_of(prompt)
    length = max(1, min(max_tokens, 12 + seed % 40))
    words = (_WORDS[(seed >> (i % 48)) % len(_WORDS)] for i in range(length))
    return " ".join(words).capitalize() + "."


def ident(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode()).hexdigest()[:24]


def created_s(text: str) -> int:
    return _EPOCH_S + seed_of(text) % 1_000_000


def is_reasoning(model: str) -> bool:
    """Models that report reasoning tokens: names with ``reasoning`` or ``o<digit>...``."""
    return "reasoning" in model or (len(model) > 1 and model[0] == "o" and model[1].isdigit())


def sse_event(name: str | None, data: Any) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless already bytes."""
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n\n"


class PromptCache:
    """Prompt prefixes seen before, so repeats report cache reads."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def hit(self, text: str) -> bool:
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in self._seen:
            return True
        self._seen.add(digest)
        return False
