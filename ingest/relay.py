"""Streaming an upstream SSE answer to the client, as it arrives, unchanged.

``relay`` is a plain ASGI send loop (no response object, no task group per
stream): each upstream chunk is written to the client as soon as it is read
and fed to the usage tracker on the way. It returns how the stream ended;
the caller emits the envelope from that.

Three endings are told apart, because they mean different things on the
envelope: the upstream finished (``ok``), the upstream failed or went silent
mid-stream (``upstream_error`` / ``upstream_timeout``: the client's response
is then cut off too, so it sees a failure rather than a clean short answer;
before the first byte, it is raised as ``UpstreamTimeout`` /
``UpstreamUnavailable`` and the client gets a proper error instead),
or the client left (``client_disconnect``: detected by a watcher on
``receive``, which cancels the send loop so the upstream connection is
closed at once instead of streaming into the void).

When the gateway asked the upstream for usage the client did not ask for
(``stream_options.include_usage``), ``UsageChunkFilter`` removes the extra
usage chunk and the ``"usage": null`` members it adds to every other chunk,
so the client receives what a direct call would have sent. It decides on the
parsed JSON of each event, so compact and spaced upstreams are treated alike.
A cross-shape call's stream is translated in the filter's place
(``translate.streams``): either is a ``Rewriter``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import orjson

from meterline.schemas import Outcome

from .call import CallRecord
from .errors import upstream_errors
from .sse import EventSplitter, data_of, with_data
from .usage import StreamUsageTracker

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


#: The members of OpenAI's usage chunk (and Azure's and vLLM's): besides ``usage``, only
#: what every chunk carries. A chunk with any other member (Azure's
#: ``prompt_filter_results``) is something the client must still get.
_USAGE_CHUNK_MEMBERS = frozenset({"id", "object", "created", "model", "system_fingerprint",
                                  "service_tier", "obfuscation", "choices", "usage"})

#: An event is at most this long; past it a rewriter (the usage filter, a stream
#: translator) stops rewriting and passes the rest through (see ``EventSplitter``).
MAX_EVENT_BYTES = 8 << 20


class EventRewriter:
    """Cuts a stream into SSE events and hands each, with its blank-line ending, to
    ``_rewrite``, which returns what the client gets of it (the stream translators of
    ``translate.streams`` and ``UsageChunkFilter`` are the two). A stream that turns out
    not to be one (an event past ``MAX_EVENT_BYTES``) goes through untouched from there.
    """

    def __init__(self, tracker: StreamUsageTracker) -> None:
        self._tracker = tracker
        self._events = EventSplitter(MAX_EVENT_BYTES)

    def feed(self, chunk: bytes) -> bytes:
        if self._events.overflow:
            return chunk
        out = [self._rewrite(event, end) for event, end in self._events.feed(chunk)]
        if self._events.overflow:  # not an event stream: the rest goes through untouched
            out.append(self._events.rest())
        return b"".join(out)

    def _rewrite(self, event: bytes, end: bytes) -> bytes:
        raise NotImplementedError


class UsageChunkFilter(EventRewriter):
    """Re-frames a chat-completions stream by SSE event and takes out the usage we asked for.

    Used only when the gateway added ``stream_options.include_usage`` to a
    request whose client did not ask for it. ``feed`` returns the bytes of every
    event completed by ``chunk`` that the client should get; ``flush``, at a
    clean end of stream, the rest. Every event goes to the tracker first,
    unedited, so usage is counted whatever the client sees.

    Decided on the parsed JSON, never on byte patterns (upstreams differ in
    spacing: ``"choices": []`` from Python's ``json.dumps``, as llama-cpp-python
    and many shims write it). Per event, with ``data`` its payload:

    - no ``usage`` substring in the event: passed as is, unparsed (the hot
      path when the upstream omits ``usage`` on text deltas, as vLLM does);
    - not a JSON object, ``[DONE]``, a comment, or no ``usage`` member: as is;
    - ``choices`` empty, ``usage`` an object, and no member outside
      ``_USAGE_CHUNK_MEMBERS``: the usage chunk, dropped;
    - otherwise the ``usage`` member is removed (``"usage": null`` on every
      chunk from OpenAI and Azure, vLLM's ``continuous_usage_stats`` counts on
      chunks with choices, or a usage chunk that also carries Azure's
      ``prompt_filter_results``, which is kept for those): the client did not
      ask for usage, so no chunk it gets carries any.

    The member is cut out of the payload's text (``without_member``), not
    re-serialised: every other byte stays the upstream's, as a direct call
    would have sent it (orjson would change spacing, escapes such as
    ``\\u00e9`` and float spellings, and turns integers past 64 bits into floats), and a
    chunk that needs no edit is passed on byte for byte. An event that needs
    one (every chunk from OpenAI: ``"usage": null``) is parsed once, for the
    filter and the tracker both, and cut by ``without_usage``'s quick path:
    about 6 µs more per event than the byte patterns took.
    """

    def _rewrite(self, event: bytes, end: bytes) -> bytes:
        kept = self._forwarded(event)
        return b"" if kept is None else kept + end

    def flush(self) -> bytes:
        """The last event if the stream ended without a blank line after it."""
        rest = self._events.rest()
        return (self._forwarded(rest) or b"") if rest.strip() else rest

    def _forwarded(self, event: bytes) -> bytes | None:
        """What the client gets of ``event``: itself, an edited copy, or nothing (None)."""
        parsed = json_object(event) if b"usage" in event else None
        if parsed is None:
            self._tracker.observe(event)
            return event
        data, chunk = parsed
        self._tracker.observe_parsed(event, chunk)  # parsed once, for both
        if "usage" not in chunk:
            return event
        if (chunk.get("choices") == [] and isinstance(chunk["usage"], dict)
                and chunk.keys() <= _USAGE_CHUNK_MEMBERS):
            return None
        return with_data(event, without_usage(data))


def json_object(event: bytes) -> tuple[bytes, dict[str, Any]] | None:
    """The event's data and its parsed JSON object, or None if it is not one."""
    data = data_of(event)
    if data is None:
        return None
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return (data, chunk) if isinstance(chunk, dict) else None


_SPACE = re.compile(rb"[ \t\r\n]*")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR = re.compile(rb"[^,}\]\s]+")  # a number, true, false or null
_NESTING = re.compile(rb'[\[\]{}"]')


def _end(pattern: re.Pattern[bytes], text: bytes, pos: int) -> int:
    found = pattern.match(text, pos)
    assert found is not None, "without_member is only given JSON orjson has parsed"
    return found.end()


def _value_end(text: bytes, pos: int) -> int:
    if text[pos] == ord('"'):
        return _end(_STRING, text, pos)
    if text[pos] not in b"[{":
        return _end(_SCALAR, text, pos)
    depth = 0
    while True:
        found = _NESTING.search(text, pos)
        assert found is not None, "without_member is only given JSON orjson has parsed"
        if text[found.start()] == ord('"'):
            pos = _end(_STRING, text, found.start())
            continue
        depth += 1 if text[found.start()] in b"[{" else -1
        pos = found.end()
        if depth == 0:
            return pos


def _members(text: bytes) -> list[tuple[int, int, int]]:
    """(key start, key end, value end) of each top-level member of a JSON object."""
    pos = _end(_SPACE, text, 0) + 1  # past the opening brace
    members: list[tuple[int, int, int]] = []
    while True:
        pos = _end(_SPACE, text, pos)
        if text[pos] == ord("}"):
            return members
        if text[pos] == ord(","):
            pos += 1
            continue
        key_end = _end(_STRING, text, pos)
        value_start = _end(_SPACE, text, _end(_SPACE, text, key_end) + 1)  # past the colon
        value_end = _value_end(text, value_start)
        members.append((pos, key_end, value_end))
        pos = value_end


def without_member(text: bytes, name: str) -> bytes:
    """The JSON object ``text`` without its top-level member(s) ``name``, other bytes kept.

    ``text`` must be valid JSON (the caller has parsed it). The member goes with
    the comma and spacing that joined it to its neighbour, so compact input
    stays compact (``{"a":1,"usage":null}`` becomes ``{"a":1}``) and spaced input
    stays spaced (``{"a": 1, "usage": null}`` becomes ``{"a": 1}``).
    """
    while True:
        members = _members(text)
        found = [i for i, (start, key_end, _) in enumerate(members)
                 if orjson.loads(text[start:key_end]) == name]
        if not found:
            return text
        index = found[0]
        start, _, end = members[index]
        if index + 1 < len(members):  # up to the next key: the comma and spacing after
            end = members[index + 1][0]
        elif index > 0:  # the last member: from the end of the one before it
            start = members[index - 1][2]
        text = text[:start] + text[end:]
        if len(found) == 1:  # a duplicate key (legal JSON) takes another scan
            return text


_TRAILING_NULL_USAGE = re.compile(rb'"usage"\s*:\s*null(\s*\}\s*)')


def without_usage(text: bytes) -> bytes:
    """``without_member(text, "usage")``, quick for the usual ``..., "usage": null}``.

    OpenAI and Azure put ``"usage": null`` last on every chunk, so this runs
    once per event of an injected stream. When ``"usage"`` occurs once and is
    followed only by ``: null}``, it is the object's last member (a quote after
    a comma or a space opens a string, and the text is valid JSON), and the
    cut is found without scanning the members.
    """
    at = text.rfind(b'"usage"')
    tail = _TRAILING_NULL_USAGE.fullmatch(text, at)
    if tail is not None and text.count(b'"usage"') == 1:
        before = text[:at].rstrip(b" \t\r\n")
        if before.endswith(b","):
            return before[:-1].rstrip(b" \t\r\n") + tail.group(1)
    return without_member(text, "usage")


@dataclass(slots=True)
class StreamEnd:
    outcome: Outcome
    error_class: str = ""


class Rewriter(Protocol):
    """What stands between the upstream's bytes and the client's: ``UsageChunkFilter``, or a
    stream translator (``translate.streams``). It feeds the tracker itself."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


async def relay(call: CallRecord, upstream: aiohttp.ClientResponse, headers: list[tuple[bytes, bytes]],
                receive: Receive, send: Send, tracker: StreamUsageTracker,
                rewriter: Rewriter | None) -> StreamEnd:
    """Stream ``upstream`` to the client; never raises for the three expected endings.

    Bytes go through unchanged, to the tracker and the client, unless ``rewriter`` is given.
    """
    main = asyncio.current_task()
    assert main is not None
    client_gone = False

    async def watch_disconnect() -> None:
        nonlocal client_gone
        while (await receive())["type"] != "http.disconnect":
            pass
        client_gone = True
        main.cancel()

    watcher = asyncio.create_task(watch_disconnect())
    started = False
    try:
        async for chunk in upstream.content.iter_any():
            if not started:
                # headers go out with the first chunk: one write instead of two, and a
                # provider that fails before its first byte still gets a proper error
                call.first_byte_at = datetime.now(UTC)
                await send({"type": "http.response.start", "status": upstream.status,
                            "headers": headers})
                started = True
            call.response_hash.update(chunk)
            call.response_bytes += len(chunk)
            if rewriter is None:
                tracker.feed(chunk)
                out = chunk
            else:
                out = rewriter.feed(chunk)
                if not out:
                    continue
            await send({"type": "http.response.body", "body": out, "more_body": True})
        tail = rewriter.flush() if rewriter is not None else b""
        if not started:
            await send({"type": "http.response.start", "status": upstream.status,
                        "headers": headers})
        watcher.cancel()
        upstream.release()  # read to the end: the connection goes back to the pool
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        return StreamEnd("ok")
    except asyncio.CancelledError:
        if not client_gone:
            raise
        main.uncancel()
        return StreamEnd("client_disconnect", "client_disconnect")
    except (TimeoutError, aiohttp.ClientError) as exc:
        if not started:  # nothing sent yet: answer with our own error instead
            with upstream_errors(call.provider, mid_response=True):
                raise
        # aiohttp's ServerTimeoutError is also a ClientError: test timeouts first
        if isinstance(exc, TimeoutError):
            return StreamEnd("upstream_timeout", type(exc).__name__)
        return StreamEnd("upstream_error", type(exc).__name__)
    finally:
        watcher.cancel()
        if not upstream.closed:
            upstream.close()  # unread bytes left: this connection cannot be reused


async def read_whole(call: CallRecord, upstream: aiohttp.ClientResponse, provider: str) -> bytes:
    """A whole (not streamed) answer from ``upstream``, recorded on ``call`` as ``relay``
    records a stream's: first byte time, the answer's hash and size."""
    try:
        with upstream_errors(provider, mid_response=True):
            data = await upstream.read()
    finally:
        upstream.release()
    call.first_byte_at = datetime.now(UTC)
    call.response_hash.update(data)
    call.response_bytes = len(data)
    return data
