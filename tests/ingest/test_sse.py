"""SSE framing: whole events out of any chunking, data read as a client reads it."""

from __future__ import annotations

from meterline.ingest.sse import EventSplitter, data_of, with_data

STREAM = (b": keep-alive\n\n"
          b"event: a\r\ndata: one\r\n\r\n"
          b"data: two\ndata:three\n\n"
          b"data\r\n\n"
          b"data: [DONE]\n\n")
EVENTS = [b": keep-alive", b"event: a\r\ndata: one", b"data: two\ndata:three", b"data",
          b"data: [DONE]"]


def test_events_and_their_ends_rebuild_the_stream_at_every_chunking() -> None:
    for size in range(1, len(STREAM) + 1):
        splitter = EventSplitter(1 << 20)
        pairs = [pair for i in range(0, len(STREAM), size)
                 for pair in splitter.feed(STREAM[i:i + size])]
        assert [event for event, _ in pairs] == EVENTS, size
        assert b"".join(event + end for event, end in pairs) + splitter.rest() == STREAM


def test_pending_bytes_past_the_bound_set_overflow() -> None:
    splitter = EventSplitter(8)
    assert splitter.feed(b"data: 0123456789") == [] and splitter.overflow
    assert splitter.rest() == b"data: 0123456789"


def test_data_joins_lines_skips_comments_and_other_fields() -> None:
    assert [data_of(event) for event in EVENTS] == [None, b"one", b"two\nthree", b"", b"[DONE]"]
    assert data_of(b"id: 7\r\n: note\r\ndata:  spaced") == b" spaced"


def test_with_data_keeps_other_lines_prefix_and_line_end() -> None:
    assert with_data(b"id: 7\r\ndata: {}\r\nretry: 5", b"{1}") == b"id: 7\r\ndata: {1}\r\nretry: 5"
    assert with_data(b"data:{\ndata:}", b"{\n}") == b"data:{\ndata:}"
    assert with_data(b"data: {\ndata: }", b"{}") == b"data: {}"
