"""The usage-chunk filter: what the client gets when only the gateway asked for usage.

Upstreams differ in how they write the same chunks: compact JSON (OpenAI,
vLLM), spaced JSON (Python's ``json.dumps``: llama-cpp-python, many shims),
Azure's ``prompt_filter_results`` chunk with empty ``choices``, vLLM's usage on
every chunk (``continuous_usage_stats``), CRLF framing. Each is fed at every
chunking that can split an event, a line or a token.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from meterline.ingest.relay import UsageChunkFilter, without_member, without_usage
from meterline.ingest.usage import StreamUsageTracker
from tests.ingest.gateway_harness import ALICE_KEY, PROVIDER_KEY, REQUEST_ID, GatewayUnderTest, KeyedUpstream

WITH_USAGE = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    b"data: [DONE]\n\n"
)
WITHOUT_USAGE = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
SIZES = (1, 2, 3, 5, 7, 17, 64, 1 << 20)

#: Azure OpenAI with include_usage: a prompt-filter chunk (empty choices, no usage
#: counts) first, content filter results inside choices, then the usage chunk.
AZURE_FILTERS = {"hate": {"filtered": False, "severity": "safe"},
                 "self_harm": {"filtered": False, "severity": "safe"}}
AZURE_PROMPT = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": AZURE_FILTERS}]}
AZURE_BASE = {"created": 1733212800, "id": "chatcmpl-AZ1", "model": "gpt-4o-2024-08-06",
              "object": "chat.completion.chunk", "system_fingerprint": "fp_04751d0b65"}
AZURE_CONTENT = [
    {"choices": [{"content_filter_results": {}, "delta": {"content": "", "refusal": None,
                                                          "role": "assistant"},
                  "finish_reason": None, "index": 0, "logprobs": None}], **AZURE_BASE},
    {"choices": [{"content_filter_results": AZURE_FILTERS, "delta": {"content": "Hello"},
                  "finish_reason": None, "index": 0, "logprobs": None}], **AZURE_BASE},
    {"choices": [{"content_filter_results": {}, "delta": {}, "finish_reason": "stop", "index": 0,
                  "logprobs": None}], **AZURE_BASE},
]
AZURE_USAGE = {"choices": [], **AZURE_BASE,
               "usage": {"completion_tokens": 2, "prompt_tokens": 11, "total_tokens": 13,
                         "prompt_tokens_details": {"cached_tokens": 0}}}

#: vLLM writes pydantic's compact JSON and omits unset fields; with
#: ``continuous_usage_stats`` every chunk with choices carries running counts.
VLLM_BASE = {"id": "chatcmpl-v1", "object": "chat.completion.chunk", "created": 1733212800,
             "model": "meta-llama/Llama-3.3-70B-Instruct"}


def compact(data: object) -> bytes:
    return orjson.dumps(data)


def spaced(data: object) -> bytes:
    return json.dumps(data).encode()


def stream(chunks: list[Any], encode: Any = compact, end: bytes = b"\n\n") -> bytes:
    """SSE events, one ``data`` line each (bytes are sent as they are: ``[DONE]``)."""
    return b"".join(b"data: " + (c if isinstance(c, bytes) else encode(c)) + end for c in chunks)


def filtered(upstream: bytes, size: int) -> tuple[bytes, StreamUsageTracker]:
    tracker = StreamUsageTracker("openai.chat")
    filter_ = UsageChunkFilter(tracker)
    out = b"".join(filter_.feed(upstream[i:i + size]) for i in range(0, len(upstream), size))
    return out + filter_.flush(), tracker


def minus_usage(chunk: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in chunk.items() if key != "usage"}


def tokens(tracker: StreamUsageTracker) -> tuple[int, int, str]:
    usage = tracker.result(None)
    return usage.input_tokens, usage.output_tokens, usage.source


def test_filter_strips_injected_usage_byte_for_byte_whatever_the_chunking() -> None:
    for size in (1, 5, 17, len(WITH_USAGE)):
        out, tracker = filtered(WITH_USAGE, size)
        assert out == WITHOUT_USAGE
        assert tokens(tracker) == (3, 1, "provider")


@pytest.mark.parametrize("encode", [compact, spaced], ids=["compact", "spaced"])
@pytest.mark.parametrize("end", [b"\n\n", b"\r\n\r\n"], ids=["lf", "crlf"])
def test_usage_chunk_dropped_and_nulls_removed_however_the_json_is_spaced(
        encode: Any, end: bytes) -> None:
    content = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                "usage": None} for word in ("Hel", "lo")]
    final = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "system_fingerprint": "fp", "choices": [],
             "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}
    upstream = stream([*content, final, b"[DONE]"], encode, end)
    if encode is spaced:
        assert b'"choices": []' in upstream and b'"usage": null' in upstream
    expected = stream([*map(minus_usage, content), b"[DONE]"], encode, end)
    for size in SIZES:
        out, tracker = filtered(upstream, size)
        assert out == expected, size
        assert tokens(tracker) == (9, 2, "provider")


def test_azure_prompt_filter_chunk_reaches_the_client_usage_chunk_does_not() -> None:
    for encode in (compact, spaced):
        # with include_usage Azure adds "usage": null to the prompt-filter chunk as well
        upstream = stream([{**AZURE_PROMPT, "usage": None},
                           *({**chunk, "usage": None} for chunk in AZURE_CONTENT),
                           AZURE_USAGE, b"[DONE]"], encode)
        expected = stream([AZURE_PROMPT, *AZURE_CONTENT, b"[DONE]"], encode)
        for size in SIZES:
            out, tracker = filtered(upstream, size)
            assert out == expected
            assert tokens(tracker) == (11, 2, "provider")
        # and without any usage member, every Azure chunk passes byte for byte
        bare = stream([AZURE_PROMPT, *AZURE_CONTENT, b"[DONE]"], encode)
        assert filtered(bare, 7)[0] == bare


def test_empty_choices_with_usage_and_prompt_filter_results_is_kept_without_usage() -> None:
    both = {**AZURE_PROMPT, "usage": {"prompt_tokens": 4, "completion_tokens": 0}}
    for encode in (compact, spaced):
        out, tracker = filtered(stream([both, b"[DONE]"], encode), 3)
        assert out == stream([AZURE_PROMPT, b"[DONE]"], encode)
        assert tokens(tracker) == (4, 0, "provider")


def test_vllm_usage_omitted_passes_unchanged_continuous_usage_removed_from_each_chunk() -> None:
    content = [{**VLLM_BASE, "choices": [{"index": 0, "delta": {"content": word},
                                          "logprobs": None, "finish_reason": None}]}
               for word in ("a", "b", "c")]
    final = {**VLLM_BASE, "choices": [],
             "usage": {"prompt_tokens": 20, "total_tokens": 23, "completion_tokens": 3}}
    omitted = stream([*content, final, b"[DONE]"])
    continuous = stream([*({**chunk, "usage": {"prompt_tokens": 20, "completion_tokens": n,
                                                "total_tokens": 20 + n}}
                           for n, chunk in enumerate(content, 1)), final, b"[DONE]"])
    expected = stream([*content, b"[DONE]"])
    for size in SIZES:
        for upstream in (omitted, continuous):
            out, tracker = filtered(upstream, size)
            assert out == expected
            assert tokens(tracker) == (20, 3, "provider")


def test_sse_framing_comments_fields_and_multiline_data() -> None:
    upstream = (b": keep-alive\n\n"
                b'id: 1\r\nevent: chunk\r\ndata: {"choices":[{"delta":{"content":"usage"}}],\r\n'
                b'data: "usage": null}\r\n\r\n'
                b'data: {"choices": [],\ndata:  "usage": {"prompt_tokens": 5, "completion_tokens": 1}}\n\n'
                b'data: {"choices":[{"delta":{"content":"\\"usage\\":{"}}]}\n\n'
                b"data: [DONE]\n\n")
    expected = (b": keep-alive\n\n"
                b'id: 1\r\nevent: chunk\r\ndata: {"choices":[{"delta":{"content":"usage"}}]}\r\n\r\n'
                b'data: {"choices":[{"delta":{"content":"\\"usage\\":{"}}]}\n\n'
                b"data: [DONE]\n\n")
    for size in SIZES:
        out, tracker = filtered(upstream, size)
        assert out == expected
        assert tokens(tracker) == (5, 1, "provider")


def test_last_event_without_blank_line_is_still_filtered_at_a_clean_end() -> None:
    upstream = WITH_USAGE.removesuffix(b"data: [DONE]\n\n").removesuffix(b"\n\n")
    out, tracker = filtered(upstream, 4)
    assert out == WITHOUT_USAGE.removesuffix(b"data: [DONE]\n\n")
    assert tokens(tracker) == (3, 1, "provider")


def test_text_that_is_not_an_event_stream_passes_through_untouched() -> None:
    for body in (b'{"error": {"message": "usage limit"}}', b"data: usage is not json\n\n"):
        assert filtered(body, 5)[0] == body


def test_without_member_keeps_every_other_byte() -> None:
    cases = {
        b'{"a":1,"usage":null}': b'{"a":1}',
        b'{"a": 1, "usage": null}': b'{"a": 1}',
        b'{"usage": null, "a": [1, {"b": "}\\"]"}]}': b'{"a": [1, {"b": "}\\"]"}]}',
        b'{"a":1,"usage":{"p":[1,2]},"b":"\\u00e9"}': b'{"a":1,"b":"\\u00e9"}',
        b'{"x":{"usage":1},"usage":null}': b'{"x":{"usage":1}}',
        b'{"usage":null}': b"{}",
        b'{"a":1e400,"usage":null}': b'{"a":1e400}',
    }
    for text, expected in cases.items():
        assert without_member(text, "usage") == expected
        assert without_usage(text) == expected  # the quick path agrees where it applies
    for text in (b'{"a": 1 ,\t"usage" : null }', b'{"usage":null,"usage":null}',
                 b'{"a":"x, \\"usage\\": null}"}', b'{"a":{"b":1,"usage":null}}'):
        assert without_usage(text) == without_member(text, "usage")


@pytest.mark.store
def test_sdk_stream_from_a_spaced_json_upstream_gets_no_empty_choices_chunk(
        gateway: GatewayUnderTest, keyed_simulator: KeyedUpstream) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello in five words."}]
    spaced_header = {"x-sim-spaced-json": "1"}
    direct = httpx.post(keyed_simulator.url + "/v1/chat/completions", headers={
        "authorization": f"Bearer {PROVIDER_KEY}", **spaced_header}, json={
        "model": "gpt-4o-mini", "messages": messages, "stream": True,
        "stream_options": {"include_usage": True}})
    assert b'"choices": []' in direct.content and b'"usage": null' in direct.content

    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    sdk_stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True, extra_headers=spaced_header)
    chunks = list(sdk_stream)  # the SDK's own SSE decoder and chunk model
    assert chunks and all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text

    with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers={
            "authorization": f"Bearer {ALICE_KEY}", **spaced_header}, json={
            "model": "gpt-4o-mini", "messages": messages, "stream": True}) as response:
        body = response.read()
    assert b'"choices": [{' in body and b"usage" not in body  # still spaced, as sent

    envelope = gateway.envelopes.get(sdk_stream.response.headers[REQUEST_ID])
    assert envelope.usage.source == "provider" and envelope.usage.output_tokens > 0
