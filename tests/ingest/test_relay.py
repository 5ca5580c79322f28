"""The usage-chunk filter: what the client gets when only the gateway asked for usage."""

from __future__ import annotations

from meterline.ingest.relay import UsageChunkFilter
from meterline.ingest.usage import StreamUsageTracker

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


def test_filter_strips_injected_usage_byte_for_byte_whatever_the_chunking() -> None:
    for size in (1, 5, 17, len(WITH_USAGE)):
        tracker = StreamUsageTracker("openai.chat")
        filter_ = UsageChunkFilter(tracker)
        out = b"".join(filter_.feed(WITH_USAGE[i:i + size]) for i in range(0, len(WITH_USAGE), size))
        assert out + filter_.flush() == WITHOUT_USAGE
        usage = tracker.result(None)
        assert (usage.input_tokens, usage.output_tokens, usage.source) == (3, 1, "provider")
