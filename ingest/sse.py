"""Server-sent events as the gateway reads them: whole events out of arbitrary chunks.

The gateway forwards a stream's bytes unchanged, so this module never
normalises anything. ``EventSplitter`` cuts the stream at each blank line and
hands back every event together with the exact bytes that ended it, so that
``event + end`` concatenated over the stream is the stream itself.

Framing accepted (WHATWG HTML, "server-sent events"): lines end in ``\\n`` or
``\\r\\n``, in any mix, and an event ends at an empty line. A lone ``\\r`` line
end is legal in the spec but sent by no LLM server we know of; a stream that
uses it is not cut into events (its bytes still pass unchanged, see
``EventSplitter``'s bound). ``data_of`` joins an event's ``data`` lines with
``\\n`` and skips comments (``: keep-alive``) and other fields, as a client does;
``with_data`` rewrites an event's data and keeps its other lines.
"""

from __future__ import annotations

import re

_EVENT_END = re.compile(rb"\r?\n\r?\n")

#: An event's end is at most this long (``\r\n\r\n``): a search resumes this far back.
_MAX_END_BYTES = 4


class EventSplitter:
    """Cuts a byte stream into whole events, whatever the chunking.

    ``feed`` is called with each chunk as it arrives and returns the events it
    completed as ``(event, end)`` pairs, ``event`` without its closing blank
    line, ``end`` the bytes of it. A pending event longer than
    ``max_pending_bytes`` is given up on: ``overflow`` is set, and the caller
    passes the rest of the stream through as raw bytes rather than buffer it
    without bound (a response that is not an event stream at all).
    """

    def __init__(self, max_pending_bytes: int) -> None:
        self._buffer = b""
        self._scanned = 0  # the bytes of _buffer already searched for an end
        self._max_pending_bytes = max_pending_bytes
        self.overflow = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[tuple[bytes, bytes]] = []
        start = 0
        # each search starts where the last one stopped, less an end's length: one
        # byte per chunk (a slow upstream) must not rescan a long event each time
        found = _EVENT_END.search(buffer, max(self._scanned - _MAX_END_BYTES, 0))
        while found is not None:
            events.append((buffer[start:found.start()], found.group()))
            start = found.end()
            found = _EVENT_END.search(buffer, start)
        self._buffer = buffer[start:]
        self._scanned = len(self._buffer)
        if len(self._buffer) > self._max_pending_bytes:
            self.overflow = True
        return events

    def rest(self) -> bytes:
        """The bytes after the last complete event; the splitter is empty afterwards."""
        rest, self._buffer, self._scanned = self._buffer, b"", 0
        return rest


def _value(line: bytes) -> bytes | None:
    """The value of a ``data`` field line, None for any other line."""
    if line == b"data":
        return b""
    if not line.startswith(b"data:"):
        return None
    value = line[5:]
    return value[1:] if value.startswith(b" ") else value


def _one_line(event: bytes) -> bool:
    return b"\n" not in event and b"\r" not in event


def data_of(event: bytes) -> bytes | None:
    """The event's data (its ``data`` lines joined by ``\\n``), None if it has none."""
    if _one_line(event):  # nearly every event of an LLM stream: no split, no join
        return _value(event)
    values = [value for line in event.splitlines() if (value := _value(line)) is not None]
    return b"\n".join(values) if values else None


def with_data(event: bytes, data: bytes) -> bytes:
    """``event`` with its data replaced by ``data``; its other lines are kept.

    The new data goes where the first ``data`` line was, one line per ``\\n`` in
    ``data``, with that line's prefix (``data:`` or ``data: ``). Lines are joined
    by the event's own line end (``\\r\\n`` if it has one, else ``\\n``).
    """
    if _one_line(event) and b"\n" not in data and _value(event) is not None:
        return (b"data: " if event.startswith(b"data: ") else b"data:") + data
    newline = b"\r\n" if b"\r\n" in event else b"\n"
    out: list[bytes] = []
    written = False
    for line in event.splitlines():
        if _value(line) is None:
            out.append(line)
        elif not written:
            prefix = b"data: " if line.startswith(b"data: ") else b"data:"
            out.extend(prefix + part for part in data.split(b"\n"))
            written = True
    trailing = newline if event.endswith((b"\n", b"\r")) else b""
    return newline.join(out) + trailing
