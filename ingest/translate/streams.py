"""Event streams from the upstream's API shape to the caller's, event by event.

``MessagesToChunks`` turns an Anthropic messages stream into chat completion
chunks, ``ChunksToMessages`` the reverse. Both plug into ``relay`` in place of
its usage filter, and cut events as it does (``relay.EventRewriter``): ``feed``
takes upstream bytes and returns the client's, ``flush`` the rest at a clean end.
Each upstream event goes to the usage tracker first, as the upstream sent it,
so the envelope's usage is what the serving provider reported, in its own
shape. Nothing is held back: each event is translated as soon as it is whole.

Anthropic to OpenAI:

    message_start                      first chunk: role, empty content
    content_block_start (tool_use)     tool_calls[k]: id, name, arguments ""
    content_block_delta text_delta     delta.content
    content_block_delta input_json_delta  tool_calls[k].function.arguments
    message_delta                      empty delta with finish_reason
    message_stop                       the usage chunk (when the client asked), [DONE]
    error                              {"error": ...}, as OpenAI streams it
    ping, other blocks                 nothing

OpenAI to Anthropic: the first chunk opens ``message_start``; text and each
tool call open a content block (closed when the next begins or the choice
finishes) and stream into it; ``[DONE]`` (or a clean end without it) sends
``message_delta`` with the stop reason and the usage, then ``message_stop``.
An OpenAI stream reports usage only in its last chunk, so ``message_start``
carries zero counts and ``message_delta`` the real ones (the Anthropic SDK
takes a message_delta's counts over message_start's). Tool calls are taken to
arrive one after another, as OpenAI streams them.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..relay import EventRewriter, json_object
from ..sse import data_of
from ..usage import StreamUsageTracker
from .responses import anthropic_error, finish_reason, openai_error, stop_reason
from .usage import anthropic_usage, openai_usage

Json = dict[str, Any]

_DONE = b"data: [DONE]\n\n"


def _chunk_event(data: Json) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _named_event(name: str, data: Json) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class _Translator(EventRewriter):
    """Feeds each upstream event to the tracker and translates it (the client's own
    event endings are written by ``_on``: the upstream's are dropped)."""

    def flush(self) -> bytes:
        """The last event if it had no blank line after it, and any closing events."""
        rest = self._events.rest()
        return (self._rewrite(rest, b"") if rest.strip() else b"") + b"".join(self._end())

    def _rewrite(self, event: bytes, end: bytes) -> bytes:
        parsed = json_object(event)
        if parsed is not None:
            self._tracker.observe_parsed(event, parsed[1])
            return b"".join(self._on(parsed[1]))
        self._tracker.observe(event)
        return b"".join(self._end()) if data_of(event) == b"[DONE]" else b""

    def _on(self, data: Json) -> list[bytes]:
        raise NotImplementedError

    def _end(self) -> list[bytes]:
        """The events that close the client's stream, once; none if it is closed."""
        return []


class MessagesToChunks(_Translator):
    """An Anthropic messages stream as chat completion chunks.

    ``include_usage``: the client asked for ``stream_options.include_usage``, so it
    gets the usage chunk (counts as ``translate.usage`` maps them).
    """

    def __init__(self, tracker: StreamUsageTracker, include_usage: bool) -> None:
        super().__init__(tracker)
        self._include_usage = include_usage
        self._base: Json = {"object": "chat.completion.chunk"}
        self._usage: Json = {}
        #: The OpenAI tool call index of each tool_use block, by its Anthropic index.
        self._calls: dict[Any, int] = {}

    def _chunk(self, delta: Json, finish: str | None = None) -> bytes:
        return _chunk_event({**self._base, "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    def _on(self, data: Json) -> list[bytes]:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self._base = {"id": message.get("id"), "object": "chat.completion.chunk",
                          "created": int(time.time()), "model": message.get("model")}
            self._usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") != "tool_use":
                return []
            index = self._calls[data.get("index")] = len(self._calls)
            return [self._chunk({"tool_calls": [{
                "index": index, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": ""}}]})]
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "message_delta":
            self._usage.update({name: value for name, value in (data.get("usage") or {}).items()
                                if value is not None})
            reason = finish_reason((data.get("delta") or {}).get("stop_reason"))
            return [self._chunk({}, reason)]
        if kind == "message_stop":
            usage = [_chunk_event({**self._base, "choices": [], "usage": openai_usage(
                self._usage)})] if self._include_usage else []
            return [*usage, _DONE]
        if kind == "error":
            return [_chunk_event(openai_error(500, data))]
        return []

    def _delta(self, data: Json) -> list[bytes]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta":
            return [self._chunk({"content": delta.get("text") or ""})]
        if delta.get("type") == "input_json_delta" and data.get("index") in self._calls:
            return [self._chunk({"tool_calls": [{
                "index": self._calls[data.get("index")],
                "function": {"arguments": delta.get("partial_json") or ""}}]})]
        return []


class ChunksToMessages(_Translator):
    """A chat completions stream (asked for usage) as an Anthropic messages stream."""

    def __init__(self, tracker: StreamUsageTracker) -> None:
        super().__init__(tracker)
        self._started = False
        self._closed = False
        #: The Anthropic index of the open content block, and what it holds: "text",
        #: or the OpenAI index of the tool call it streams; None when no block is open.
        self._blocks = 0
        self._open: str | int | None = None
        self._stop_reason = "end_turn"
        self._usage: Json = {}

    def _start(self, chunk: Json) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [_named_event("message_start", {"type": "message_start", "message": {
            "id": chunk.get("id"), "type": "message", "role": "assistant",
            "model": chunk.get("model"), "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}})]

    def _open_block(self, holds: str | int, block: Json) -> list[bytes]:
        out = self._close_block()
        self._open = holds
        return [*out, _named_event("content_block_start", {
            "type": "content_block_start", "index": self._blocks, "content_block": block})]

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        self._blocks += 1
        return [_named_event("content_block_stop", {"type": "content_block_stop",
                                                    "index": self._blocks - 1})]

    def _block_delta(self, delta: Json) -> bytes:
        return _named_event("content_block_delta", {"type": "content_block_delta",
                                                    "index": self._blocks, "delta": delta})

    def _on(self, data: Json) -> list[bytes]:
        if "error" in data:  # the upstream ends its stream after an error
            self._closed = True
            return [_named_event("error", anthropic_error(500, data))]
        out = self._start(data)
        choices = data.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        delta = choice.get("delta") or {}
        text = delta.get("content") or delta.get("refusal")
        if text:
            if self._open != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            out.append(self._block_delta({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or []:
            out += self._tool_call(call)
        if choice.get("finish_reason"):
            self._stop_reason = stop_reason(choice["finish_reason"])
            out += self._close_block()
        if isinstance(data.get("usage"), dict):
            self._usage = data["usage"]
        return out

    def _tool_call(self, call: Json) -> list[bytes]:
        out: list[bytes] = []
        function = call.get("function") or {}
        index = call.get("index", 0)
        if self._open != index:
            out += self._open_block(index, {"type": "tool_use", "id": call.get("id"),
                                            "name": function.get("name"), "input": {}})
        if function.get("arguments"):
            out.append(self._block_delta({"type": "input_json_delta",
                                          "partial_json": function["arguments"]}))
        return out

    def _end(self) -> list[bytes]:
        if self._closed:
            return []
        self._closed = True
        return [*self._start({}), *self._close_block(),
                _named_event("message_delta", {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                    "usage": anthropic_usage(self._usage)}),
                _named_event("message_stop", {"type": "message_stop"})]
