"""The spool's in-memory index, compact: about 25 bytes per unconfirmed envelope.

The spool must find a record by seq (replay reads in seq order) and by
request id (the sink confirms ids). A dict entry per envelope for each costs
about 300 bytes; through an hour of store outage at 1,000 calls/s that is a
gigabyte. So each segment keeps its own index in flat arrays:

- ``offsets``: the record's byte offset in the segment, by position
  (seq - first seq); a frame ends where the next one starts, the last where
  the segment ends (``scan`` and ``append`` write frames back to back);
- ``flags``: one byte per position, 1 while the record is outstanding;
- request id → position: a dict while the segment is active (appends land
  in it), then, once the segment is sealed, ids sorted into one ``bytes``
  (16 bytes each) with their positions beside them, searched by bisection.

``SealedRanges`` finds the sealed segments that can hold an id: UUIDv7 ids
grow with time, so each segment covers a narrow id range, and a confirmation
is looked up in one or two segments, not in all of them.
"""

from __future__ import annotations

import bisect
from array import array

ID_BYTES = 16


class _IdColumn:
    """A sorted ``bytes`` of 16-byte ids as a sequence, for ``bisect``."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data) // ID_BYTES

    def __getitem__(self, index: int) -> bytes:
        start = index * ID_BYTES
        return self._data[start:start + ID_BYTES]


class SegmentIndex:
    """Positions, outstanding flags and ids of one segment's records."""

    __slots__ = (
        "_open_ids",
        "_sorted_ids",
        "_sorted_positions",
        "flags",
        "max_id",
        "min_id",
        "offsets",
        "outstanding",
    )

    def __init__(self) -> None:
        self.offsets = array("I")
        self.flags = bytearray()
        self.outstanding = 0
        self.min_id = b"\xff" * ID_BYTES
        self.max_id = b""
        self._open_ids: dict[bytes, int] | None = {}
        self._sorted_ids = _IdColumn(b"")
        self._sorted_positions = array("I")

    @property
    def sealed(self) -> bool:
        return self._open_ids is None

    def add(self, offset: int, request_id: bytes) -> None:
        """Index the segment's next record (position ``len(offsets)``) as outstanding."""
        assert self._open_ids is not None, "a sealed segment takes no records"
        self._open_ids[request_id] = len(self.offsets)
        self.offsets.append(offset)
        self.flags.append(1)
        self.outstanding += 1
        self.min_id = min(self.min_id, request_id)
        self.max_id = max(self.max_id, request_id)

    def seal(self) -> None:
        """No more records: the id dict becomes a sorted column (about 20 bytes an id).

        Only outstanding ids are kept: a confirmed one is never looked up again
        (a second confirmation of it matches nothing, as it should).
        """
        if self._open_ids is None:
            return
        live = sorted((request_id, position) for request_id, position in self._open_ids.items()
                      if self.flags[position])
        self._sorted_ids = _IdColumn(b"".join(request_id for request_id, _ in live))
        self._sorted_positions = array("I", (position for _, position in live))
        self._open_ids = None

    def frame(self, position: int, segment_size: int) -> tuple[int, int]:
        """(offset, frame size) of the record at ``position``."""
        offset = self.offsets[position]
        end = self.offsets[position + 1] if position + 1 < len(self.offsets) else segment_size
        return offset, end - offset

    def is_outstanding(self, position: int) -> bool:
        return 0 <= position < len(self.flags) and bool(self.flags[position])

    def confirm(self, request_id: bytes) -> bool:
        """Mark ``request_id`` confirmed if this segment holds it outstanding."""
        position = self._position(request_id)
        if position is None or not self.flags[position]:
            return False
        self.flags[position] = 0
        self.outstanding -= 1
        return True

    def _position(self, request_id: bytes) -> int | None:
        if self._open_ids is not None:
            return self._open_ids.get(request_id)
        ids = self._sorted_ids
        at = bisect.bisect_left(ids, request_id)
        if at < len(ids) and ids[at] == request_id:
            return self._sorted_positions[at]
        return None

    def outstanding_positions(self, start: int, limit: int) -> list[int]:
        """Up to ``limit`` outstanding positions from ``start`` on, in order."""
        found: list[int] = []
        flags = self.flags
        position = flags.find(1, max(start, 0))
        while position >= 0 and len(found) < limit:
            found.append(position)
            position = flags.find(1, position + 1)
        return found


class SealedRanges:
    """Which sealed segments can hold a given id, by their id ranges.

    Segments in seq order have nearly increasing id ranges (a call's id is
    taken when it arrives, its envelope appended when it ends). With the
    running maximum of ``max_id`` from the first segment and the running
    minimum of ``min_id`` from the last, both sorted, the segments that can
    hold ``id`` are one slice found by two bisections.
    """

    def __init__(self, indexes: list[SegmentIndex]) -> None:
        self._indexes = indexes
        self._running_max: list[bytes] = []
        self._running_min: list[bytes] = []
        highest = b""
        for index in indexes:
            highest = max(highest, index.max_id)
            self._running_max.append(highest)
        lowest = b"\xff" * ID_BYTES
        for index in reversed(indexes):
            lowest = min(lowest, index.min_id)
            self._running_min.append(lowest)
        self._running_min.reverse()

    def candidates(self, request_id: bytes) -> list[SegmentIndex]:
        start = bisect.bisect_left(self._running_max, request_id)
        end = bisect.bisect_right(self._running_min, request_id)
        return self._indexes[start:end]
