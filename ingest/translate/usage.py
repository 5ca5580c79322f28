"""Token counts from one API shape to the other, so the client sees consistent numbers.

The two APIs split input differently:

- OpenAI's ``prompt_tokens`` counts *every* input token, and
  ``prompt_tokens_details.cached_tokens`` says how many of them were read from
  the cache;
- Anthropic's ``input_tokens`` counts only the *uncached* input, and
  ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` come beside it.

So ``prompt_tokens = input_tokens + cache_read_input_tokens +
cache_creation_input_tokens`` and ``cached_tokens = cache_read_input_tokens``.
OpenAI has no cache writes: written tokens are input it did not read from a
cache, so they count as uncached prompt tokens. The reverse has none to report
(``cache_creation_input_tokens`` 0). Output is ``completion_tokens`` one way and
``output_tokens`` the other; both include reasoning (thinking) tokens.

These are the client's numbers only. The envelope's usage is read from the
upstream's own answer, in its own shape (``ingest.usage``), and priced on the
model that served the call.
"""

from __future__ import annotations

from typing import Any


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def openai_usage(anthropic: dict[str, Any]) -> dict[str, Any]:
    """A chat completion's ``usage`` for an Anthropic ``usage`` block."""
    read = _count(anthropic.get("cache_read_input_tokens"))
    prompt = (_count(anthropic.get("input_tokens")) + read
              + _count(anthropic.get("cache_creation_input_tokens")))
    output = _count(anthropic.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": output,
            "total_tokens": prompt + output, "prompt_tokens_details": {"cached_tokens": read}}


def anthropic_usage(openai: dict[str, Any]) -> dict[str, Any]:
    """A message's ``usage`` for a chat completion's ``usage`` block."""
    prompt = _count(openai.get("prompt_tokens"))
    details = openai.get("prompt_tokens_details")
    cached = min(_count(details.get("cached_tokens")) if isinstance(details, dict) else 0, prompt)
    return {"input_tokens": prompt - cached, "output_tokens": _count(openai.get("completion_tokens")),
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}
