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
usage chunk and the ``"usage":null`` members it adds to every other chunk,
so the client receives what a direct call would have sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from meterline.schemas import Outcome

from .call import CallRecord
from .errors import upstream_errors
from .usage import StreamUsageTracker

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class UsageChunkFilter:
    """Re-frames a chat-completions stream by SSE event and drops injected usage."""

    def __init__(self, tracker: StreamUsageTracker) -> None:
        self._tracker = tracker
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of every complete event in ``chunk`` the client should get."""
        buffer = self._buffer + chunk if self._buffer else chunk
        out: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            event = buffer[start:end]
            start = end + 2
            self._tracker.observe(event)
            if b'"choices":[]' in event and b'"usage":{' in event:
                continue  # the usage chunk only we asked for
            out.append(event.replace(b',"usage":null', b"") + b"\n\n")
        self._buffer = buffer[start:]
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


@dataclass(slots=True)
class StreamEnd:
    outcome: Outcome
    error_class: str = ""


async def relay(call: CallRecord, upstream: aiohttp.ClientResponse, headers: list[tuple[bytes, bytes]],
                receive: Receive, send: Send, tracker: StreamUsageTracker,
                strip_usage: bool) -> StreamEnd:
    """Stream ``upstream`` to the client; never raises for the three expected endings."""
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
    filter_ = UsageChunkFilter(tracker) if strip_usage else None
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
            if filter_ is None:
                tracker.feed(chunk)
                out = chunk
            else:
                out = filter_.feed(chunk)
                if not out:
                    continue
            await send({"type": "http.response.body", "body": out, "more_body": True})
        tail = filter_.flush() if filter_ is not None else b""
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
