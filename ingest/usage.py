"""Usage capture from provider responses, whole or streamed.

Normalised to ``meterline.schemas.Usage``: ``input_tokens`` are *uncached*
input tokens, cache reads and cache writes (5 minute, 1 hour) are separate,
``reasoning_tokens`` is the part of output spent on reasoning.

OpenAI reports cached tokens *inside* ``prompt_tokens``; Anthropic reports
them beside ``input_tokens``. Getting this wrong double-prices cache reads,
so the conversion lives here, once.

Where usage is absent from a successful answer (a stream cut short, a client
that left, a server that omits it) it is estimated (see ``estimate``) and
marked so; the envelope never claims a provider figure it did not see.
"""

from __future__ import annotations

from typing import Any

import orjson

from meterline.schemas import Surface, Usage

from .estimate import request_chars, response_chars, stream_chars, tokens_for
from .sse import EventSplitter, data_of

#: Raw stream bytes kept for an estimate, per call; past this, the estimate
#: counts what was kept (a lower bound) rather than holding an unbounded stream.
_MAX_KEPT_BYTES = 8 << 20

#: Usage of calls that consume no tokens (count_tokens, models list).
FREE = Usage(source="provider")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


#: Tier names that mean the provider's standard price.
_DEFAULT_TIERS = frozenset({"", "default", "standard", "auto"})


def service_tier(value: Any) -> str:
    """The tier a provider reported a call ran at, "" for its default (or anything unusable)."""
    if not isinstance(value, str) or len(value) > 32:
        return ""
    tier = value.strip().lower()
    return "" if tier in _DEFAULT_TIERS or not tier.replace("_", "").isalnum() else tier


def openai_usage(block: dict[str, Any], tier: Any = "") -> Usage:
    """Chat completions (``prompt_tokens``), Responses (``input_tokens``) and embeddings.

    ``tier``: the response's top-level ``service_tier`` (OpenAI reports it beside usage).
    """
    if "input_tokens" in block:  # Responses API
        total_in = _int(block.get("input_tokens"))
        out = _int(block.get("output_tokens"))
        cached = _int((block.get("input_tokens_details") or {}).get("cached_tokens"))
        reasoning = _int((block.get("output_tokens_details") or {}).get("reasoning_tokens"))
    else:
        total_in = _int(block.get("prompt_tokens"))
        out = _int(block.get("completion_tokens"))
        cached = _int((block.get("prompt_tokens_details") or {}).get("cached_tokens"))
        reasoning = _int((block.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    return Usage(input_tokens=max(total_in - cached, 0), output_tokens=out,
                 cache_read_tokens=cached, reasoning_tokens=reasoning, source="provider",
                 service_tier=service_tier(tier))


def anthropic_usage(block: dict[str, Any], source: Any = "provider") -> Usage:
    creation = block.get("cache_creation") or {}
    write_1h = _int(creation.get("ephemeral_1h_input_tokens"))
    write_5m = _int(creation.get("ephemeral_5m_input_tokens"))
    if not creation:  # older responses give only the total, which is 5-minute writes
        write_5m = _int(block.get("cache_creation_input_tokens"))
    return Usage(input_tokens=_int(block.get("input_tokens")),
                 output_tokens=_int(block.get("output_tokens")),
                 cache_read_tokens=_int(block.get("cache_read_input_tokens")),
                 cache_write_5m_tokens=write_5m, cache_write_1h_tokens=write_1h,
                 source=source, service_tier=service_tier(block.get("service_tier")))


def estimated(request: dict[str, Any] | None, output_chars: int) -> Usage:
    """An estimate from request and response text; ``missing`` if there is no text."""
    input_chars = request_chars(request)
    if not input_chars and not output_chars:
        return Usage(source="missing")
    return Usage(input_tokens=tokens_for(input_chars), output_tokens=tokens_for(output_chars),
                 source="estimated")


def usage_from_body(surface: Surface, body: Any, request: dict[str, Any] | None) -> Usage:
    """Usage of a complete, successful (non-streamed) response body."""
    if surface in ("anthropic.count_tokens", "openai.models"):
        return FREE  # counting tokens and listing models consume nothing
    block = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(block, dict):
        return estimated(request, response_chars(body))
    if surface.startswith("anthropic"):
        return anthropic_usage(block)
    return openai_usage(block, body.get("service_tier"))


class StreamUsageTracker:
    """Follows an SSE stream and keeps the latest usage and the served model.

    ``feed`` (raw chunks) or ``observe`` (whole events) is called as bytes are
    forwarded; it never alters or delays them. Only events that can carry
    usage are parsed (a substring test first: ``"usage"`` is the key however
    the upstream spaces its JSON), so a long stream of text deltas costs a few
    ``bytes.find`` calls per chunk. Events are cut and their data read by SSE's
    rules (``sse``: ``\n`` or ``\r\n`` line ends, multi-line ``data``). Until the
    final usage is seen, events are kept (bounded) so ``result`` can estimate.
    """

    def __init__(self, surface: Surface) -> None:
        self.surface = surface
        self.model = ""
        self._anthropic = surface.startswith("anthropic")
        self._usage: Usage | None = None
        self._final = False
        self._events = EventSplitter(_MAX_KEPT_BYTES)
        self._anthropic_block: dict[str, Any] = {}
        self._kept: list[bytes] = []
        self._kept_bytes = 0

    def feed(self, chunk: bytes) -> None:
        for event, _ in self._events.feed(chunk):
            self.observe(event)
        if self._events.overflow:  # a stream that never sends a blank line: drop what is pending
            self._events = EventSplitter(_MAX_KEPT_BYTES)

    def observe(self, event: bytes) -> None:
        """One complete SSE event (without its blank-line terminator)."""
        self._keep(event)
        if b'"usage"' in event or (not self.model and b'"model"' in event):
            self._parse(event)

    def observe_parsed(self, event: bytes, data: dict[str, Any]) -> None:
        """``observe`` for an event whose data the caller has parsed already (``data``)."""
        self._keep(event)
        self._observe_anthropic(data) if self._anthropic else self._observe_openai(data)

    def _keep(self, event: bytes) -> None:
        if not self._final and self._kept_bytes < _MAX_KEPT_BYTES:
            self._kept.append(event)
            self._kept_bytes += len(event)

    def result(self, request: dict[str, Any] | None) -> Usage:
        """Provider usage if the stream reported it in full, else an estimate."""
        if self._final and self._usage is not None:
            return self._usage
        output_chars = stream_chars(self._kept)
        if self._anthropic and self._anthropic_block:
            # message_start gave input and cache counts; output is all we lack
            partial = anthropic_usage(self._anthropic_block, source="estimated")
            return partial.model_copy(update={"output_tokens": max(
                partial.output_tokens, tokens_for(output_chars))})
        return estimated(request, output_chars)

    def _parse(self, event: bytes) -> None:
        data = data_of(event)
        if data is None or data == b"[DONE]":
            return
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(parsed, dict):
            self._observe_anthropic(parsed) if self._anthropic else self._observe_openai(parsed)

    def _observe_openai(self, data: dict[str, Any]) -> None:
        if str(data.get("type", "")).startswith("response."):  # Responses API events
            response = data.get("response") or {}
            self.model = self.model or str(response.get("model") or "")
            if isinstance(response.get("usage"), dict):
                self._usage = openai_usage(response["usage"], response.get("service_tier"))
                self._final = True
            return
        self.model = self.model or str(data.get("model") or "")
        if isinstance(data.get("usage"), dict):
            self._usage = openai_usage(data["usage"], data.get("service_tier"))
            self._final = True

    def _observe_anthropic(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.model = str(message.get("model") or self.model)
            self._anthropic_block = dict(message.get("usage") or {})
        elif kind == "message_delta" and isinstance(data.get("usage"), dict):
            # message_delta carries cumulative output (and sometimes final input) counts
            self._anthropic_block.update({k: v for k, v in data["usage"].items() if v is not None})
            self._usage, self._final = anthropic_usage(self._anthropic_block), True
