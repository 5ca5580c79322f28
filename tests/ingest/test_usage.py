"""Usage normalisation and stream tracking, on recorded provider payloads."""

from __future__ import annotations

import orjson

from meterline.ingest.usage import (
    StreamUsageTracker,
    anthropic_usage,
    openai_usage,
    service_tier,
    usage_from_body,
)
from meterline.schemas import Usage


def sse(name: str | None, data: object) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def test_openai_cached_tokens_are_taken_out_of_input() -> None:
    usage = openai_usage({"prompt_tokens": 2000, "completion_tokens": 300,
                          "prompt_tokens_details": {"cached_tokens": 1500},
                          "completion_tokens_details": {"reasoning_tokens": 200}})
    assert usage == Usage(input_tokens=500, output_tokens=300, cache_read_tokens=1500,
                          reasoning_tokens=200, source="provider")


def test_responses_api_usage_shape() -> None:
    usage = openai_usage({"input_tokens": 40, "input_tokens_details": {"cached_tokens": 8},
                          "output_tokens": 90, "output_tokens_details": {"reasoning_tokens": 64}})
    assert (usage.input_tokens, usage.cache_read_tokens, usage.reasoning_tokens) == (32, 8, 64)


def test_anthropic_cache_writes_split_by_ttl_and_legacy_total_is_5m() -> None:
    usage = anthropic_usage({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 7,
                             "cache_creation_input_tokens": 300,
                             "cache_creation": {"ephemeral_5m_input_tokens": 100,
                                                "ephemeral_1h_input_tokens": 200}})
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens, usage.cache_read_tokens) == (
        100, 200, 7)
    legacy = anthropic_usage({"input_tokens": 1, "cache_creation_input_tokens": 50})
    assert (legacy.cache_write_5m_tokens, legacy.cache_write_1h_tokens) == (50, 0)


def test_body_without_usage_is_estimated_from_text() -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "x" * 40}]}
    body = {"choices": [{"message": {"role": "assistant", "content": "y" * 20}}]}
    usage = usage_from_body("openai.chat", body, request)
    assert usage == Usage(input_tokens=10, output_tokens=5, source="estimated")
    assert usage_from_body("openai.chat", None, None).source == "missing"
    assert usage_from_body("anthropic.count_tokens", {"input_tokens": 9}, request).source == "provider"


def test_anthropic_stream_usage_across_chunk_boundaries() -> None:
    stream = (sse("message_start", {"type": "message_start", "message": {
        "model": "claude-sonnet-4-5", "usage": {
            "input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 100,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 50}}}})
        + sse("content_block_delta", {"type": "content_block_delta",
                                      "delta": {"type": "text_delta", "text": "hello"}})
        + sse("message_delta", {"type": "message_delta", "usage": {"output_tokens": 42}}))
    tracker = StreamUsageTracker("anthropic.messages")
    for start in range(0, len(stream), 7):  # chunk edges fall inside events and lines
        tracker.feed(stream[start:start + 7])
    usage = tracker.result(None)
    assert usage == Usage(input_tokens=12, output_tokens=42, cache_read_tokens=100,
                          cache_write_1h_tokens=50, source="provider")
    assert tracker.model == "claude-sonnet-4-5"


def test_anthropic_stream_cut_before_message_delta_keeps_input_estimates_output() -> None:
    tracker = StreamUsageTracker("anthropic.messages")
    tracker.feed(sse("message_start", {"type": "message_start", "message": {
        "model": "c", "usage": {"input_tokens": 30, "output_tokens": 1}}}))
    tracker.feed(sse("content_block_delta", {"type": "content_block_delta",
                                             "delta": {"type": "text_delta", "text": "z" * 40}}))
    usage = tracker.result({"messages": [{"content": "ignored: input came from the provider"}]})
    assert usage == Usage(input_tokens=30, output_tokens=10, source="estimated")


def test_openai_stream_without_usage_chunk_is_estimated() -> None:
    tracker = StreamUsageTracker("openai.chat")
    for word in ("abcd", "efgh", "ijkl"):
        tracker.feed(sse(None, {"model": "gpt-4o-mini", "choices": [{"delta": {"content": word}}]}))
    usage = tracker.result({"messages": [{"role": "user", "content": "q" * 8}]})
    assert usage == Usage(input_tokens=2, output_tokens=3, source="estimated")
    assert tracker.model == "gpt-4o-mini"


def test_responses_stream_usage_from_completed_event_and_deltas_counted_once() -> None:
    tracker = StreamUsageTracker("openai.responses")
    tracker.feed(sse("response.output_text.delta", {"type": "response.output_text.delta",
                                                    "delta": "abcdefgh"}))
    tracker.feed(sse("response.output_text.done", {"type": "response.output_text.done",
                                                   "text": "abcdefgh"}))
    assert tracker.result(None) == Usage(input_tokens=0, output_tokens=2, source="estimated")
    tracker.feed(sse("response.completed", {"type": "response.completed", "response": {
        "model": "o4-mini", "usage": {"input_tokens": 5, "output_tokens": 9}}}))
    assert tracker.result(None) == Usage(input_tokens=5, output_tokens=9, source="provider")


def test_openai_stream_usage_from_spaced_json_crlf_and_multiline_data() -> None:
    spaced = (b'data: {"model": "llama", "choices": [{"delta": {"content": "hi"}}], "usage": null}\r\n\r\n'
              b'data: {"model": "llama", "choices": [],\r\n'
              b'data:  "usage": {"prompt_tokens": 7, "completion_tokens": 2}}\r\n\r\n'
              b"data: [DONE]\r\n\r\n")
    for size in (1, 3, len(spaced)):
        tracker = StreamUsageTracker("openai.chat")
        for start in range(0, len(spaced), size):
            tracker.feed(spaced[start:start + size])
        assert tracker.result(None) == Usage(input_tokens=7, output_tokens=2, source="provider")
        assert tracker.model == "llama"


def test_the_service_tier_is_read_where_each_provider_reports_it() -> None:
    """OpenAI beside usage (whole, chunk, Responses); Anthropic inside usage. The default
    tier, an unknown shape or junk are all the default price ("")."""
    body = {"service_tier": "priority", "usage": {"prompt_tokens": 10, "completion_tokens": 2}}
    assert usage_from_body("openai.chat", body, None).service_tier == "priority"
    assert usage_from_body("openai.chat", {**body, "service_tier": "default"},
                           None).service_tier == ""
    anthropic = {"usage": {"input_tokens": 3, "output_tokens": 1, "service_tier": "priority"}}
    assert usage_from_body("anthropic.messages", anthropic, None).service_tier == "priority"
    tracker = StreamUsageTracker("openai.responses")
    tracker.observe(b'data: {"type": "response.completed", "response": {"service_tier": "flex",'
                    b' "usage": {"input_tokens": 5, "output_tokens": 1}}}')
    assert tracker.result(None).service_tier == "flex"
    assert [service_tier(v) for v in ("Standard", "auto", None, 7, "x" * 40, "a b", "scale")] == [
        "", "", "", "", "", "", "scale"]
