"""Streams translated event by event (``ingest/translate/streams``).

Upstream streams are fed whole and a few bytes at a time (translation must not
depend on how the network cuts them). The client's events are assembled back
into text, tool calls, stop reason and usage; the tracker, fed the upstream's
own events, must report the upstream's usage for the envelope.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from meterline.ingest.translate.streams import ChunksToMessages, MessagesToChunks
from meterline.ingest.usage import StreamUsageTracker
from meterline.schemas import Usage


def anthropic_event(data: Any) -> bytes:
    name: str = data["type"]
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def openai_chunk(data: dict[str, Any] | str) -> bytes:
    return b"data: " + (data.encode() if isinstance(data, str) else orjson.dumps(data)) + b"\n\n"


ANTHROPIC_STREAM = b"".join(anthropic_event(e) for e in [
    {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 2000,
                  "cache_creation_input_tokens": 0}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                          "text": " me check."}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                          "partial_json": '{"city": '}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                          "partial_json": '"Paris"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta",
                                                          "partial_json": "{}"}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 25}},
    {"type": "message_stop"},
])

OPENAI_BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
               "model": "gpt-4o-mini"}


def openai_choice(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return openai_chunk({**OPENAI_BASE, "choices": [{"index": 0, "delta": delta,
                                                     "finish_reason": finish}], "usage": None})


OPENAI_STREAM = b"".join([
    openai_choice({"role": "assistant", "content": ""}),
    openai_choice({"content": "Let"}),
    openai_choice({"content": " me check."}),
    openai_choice({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}),
    openai_choice({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    openai_choice({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    openai_choice({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                   "function": {"name": "get_time", "arguments": "{}"}}]}),
    openai_choice({}, "tool_calls"),
    openai_chunk({**OPENAI_BASE, "choices": [], "usage": {
        "prompt_tokens": 2012, "completion_tokens": 25, "total_tokens": 2037,
        "prompt_tokens_details": {"cached_tokens": 2000}}}),
    openai_chunk("[DONE]"),
])


def pieces(stream: bytes, size: int) -> list[bytes]:
    return [stream[i:i + size] for i in range(0, len(stream), size)] if size else [stream]


def run(translator: MessagesToChunks | ChunksToMessages, stream: bytes, size: int) -> bytes:
    return b"".join(translator.feed(piece) for piece in pieces(stream, size)) + translator.flush()


def data_lines(out: bytes) -> list[bytes]:
    return [line[6:] for line in out.split(b"\n") if line.startswith(b"data: ")]


@pytest.mark.parametrize("size", [0, 1, 7])
def test_an_anthropic_stream_becomes_chat_chunks(size: int) -> None:
    tracker = StreamUsageTracker("anthropic.messages")
    out = run(MessagesToChunks(tracker, include_usage=True), ANTHROPIC_STREAM, size)
    assert out.endswith(b"data: [DONE]\n\n") and b"event:" not in out
    chunks = [orjson.loads(line) for line in data_lines(out)[:-1]]
    assert {(c["id"], c["object"], c["model"]) for c in chunks} == {
        ("msg_1", "chat.completion.chunk", "claude-sonnet-4-5")}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check."
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        for call in delta.get("tool_calls", []):
            into = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
            into["id"] += call.get("id", "")
            into["name"] += call["function"].get("name", "")
            into["arguments"] += call["function"]["arguments"]
    assert calls == {0: {"id": "toolu_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
                     1: {"id": "toolu_2", "name": "get_time", "arguments": "{}"}}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1] == {**{k: chunks[0][k] for k in ("id", "object", "created", "model")},
                          "choices": [], "usage": {
                              "prompt_tokens": 2012, "completion_tokens": 25,
                              "total_tokens": 2037,
                              "prompt_tokens_details": {"cached_tokens": 2000}}}
    assert (tracker.model, tracker.result(None)) == ("claude-sonnet-4-5", Usage(
        input_tokens=12, output_tokens=25, cache_read_tokens=2000, source="provider"))


def test_the_usage_chunk_goes_only_to_a_client_that_asked() -> None:
    tracker = StreamUsageTracker("anthropic.messages")
    out = run(MessagesToChunks(tracker, include_usage=False), ANTHROPIC_STREAM, 0)
    assert b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n")
    assert tracker.result(None).output_tokens == 25  # the envelope still has it


@pytest.mark.parametrize("size", [0, 1, 5])
def test_a_chat_stream_becomes_anthropic_events(size: int) -> None:
    tracker = StreamUsageTracker("openai.chat")
    out = run(ChunksToMessages(tracker), OPENAI_STREAM, size)
    events = [orjson.loads(line) for line in data_lines(out)]
    names = [line[7:].decode() for line in out.split(b"\n") if line.startswith(b"event: ")]
    assert names == [event["type"] for event in events]
    assert names == ["message_start",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    start = events[0]["message"]
    assert (start["id"], start["model"], start["role"], start["content"]) == (
        "chatcmpl-1", "gpt-4o-mini", "assistant", [])
    blocks: dict[int, dict[str, Any]] = {}
    for event in events:
        if event["type"] == "content_block_start":
            blocks[event["index"]] = {**event["content_block"], "json": ""}
        elif event["type"] == "content_block_delta":
            delta, block = event["delta"], blocks[event["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                block["json"] += delta["partial_json"]
    assert blocks == {
        0: {"type": "text", "text": "Let me check.", "json": ""},
        1: {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {},
            "json": '{"city": "Paris"}'},
        2: {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}, "json": "{}"}}
    assert events[-2] == {"type": "message_delta",
                          "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                          "usage": {"input_tokens": 12, "output_tokens": 25,
                                    "cache_read_input_tokens": 2000,
                                    "cache_creation_input_tokens": 0}}
    assert (tracker.model, tracker.result(None)) == ("gpt-4o-mini", Usage(
        input_tokens=12, output_tokens=25, cache_read_tokens=2000, source="provider"))


def test_a_chat_stream_that_ends_without_done_is_still_closed() -> None:
    stream = openai_choice({"content": "Hi"}) + openai_choice({}, "length")
    out = run(ChunksToMessages(StreamUsageTracker("openai.chat")), stream, 3)
    events = [orjson.loads(line) for line in data_lines(out)]
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"


def test_stream_errors_are_rendered_as_the_callers_stream_error() -> None:
    overloaded = anthropic_event({"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "Overloaded"}})
    out = run(MessagesToChunks(StreamUsageTracker("anthropic.messages"), True), overloaded, 0)
    assert orjson.loads(data_lines(out)[0]) == {"error": {
        "message": "Overloaded", "type": "server_error", "param": None,
        "code": "overloaded_error"}}
    failed = openai_chunk({"error": {"message": "Boom", "type": "server_error"}})
    out = run(ChunksToMessages(StreamUsageTracker("openai.chat")), failed, 0)
    assert out == (b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
                   b'"message":"Boom"}}\n\n')  # and nothing after it
