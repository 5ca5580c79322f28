"""A write-back view of a faust table for one batch of a detector stream.

Detectors assign a key on every call (``state[key] = value``); on a plain
faust table each assignment is one changelog message. ``TableBuffer`` keeps
the batch's assignments in memory and ``flush`` writes each changed key
once: into the table's store and to its changelog, on the partition of the
event that changed it. Reads see the batch's own writes first.

Why that partition is right: the stream is keyed by team (provider), so every
key a detector touches for an event belongs to that event's partition, and
the changelog partition must equal it for faust to recover the key where the
partition is assigned next.

Contract: set ``partition`` before observing each event; call ``flush`` at
the end of the batch, before the batch is acknowledged, so faust's commit
(which flushes its producer first) never passes an event whose state change
is not in the changelog; then ``end_changelog_batches``.

Why ``end_changelog_batches``: faust restores a table by reading each
changelog partition up to its high watermark, and the embedded broker
(tansu, memory storage) reports the high watermark as the base offset of the
partition's last record batch plus one: the other records of that batch are
never restored. Measured: three batches of ten records, high watermark 21,
not 30; the restarted detector lost its latest month-to-date state and missed
a 60% budget share. A one-record batch (``CHANGELOG_END_KEY``) after each
flushed batch makes the last batch whole on every broker.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

_DELETED = object()
#: The key of the one-record batch that closes each flush on a changelog partition;
#: no detector reads it.
CHANGELOG_END_KEY = "~end"


async def end_changelog_batches(producer: Any, table: Any, partitions: set[int]) -> None:
    """Close the flushed changelog writes with a one-record batch per partition.

    1. wait until the flush's records are on the broker (a batch of their own);
    2. send one ``CHANGELOG_END_KEY`` record per partition written, and wait again:
       each is its partition's last batch, of one record, fully counted by the
       broker's high watermark (see the module docstring).
    """
    if not partitions:
        return
    await producer.flush()
    for partition in partitions:
        table.send_changelog(partition, CHANGELOG_END_KEY, 1)
    await producer.flush()


class TableBuffer(MutableMapping[str, Any]):
    """Batch-local writes over a faust ``Table`` (``store="memory://"``)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._dirty: dict[str, tuple[int, Any]] = {}
        self.partition = 0
        self.partitions_written: set[int] = set()

    def __getitem__(self, key: str) -> Any:
        if key in self._dirty:
            value = self._dirty[key][1]
            if value is _DELETED:
                raise KeyError(key)
            return value
        return self._table.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._dirty[key] = (self.partition, value)

    def __delitem__(self, key: str) -> None:
        self[key]  # KeyError if absent, as a mapping must
        self._dirty[key] = (self.partition, _DELETED)

    def __iter__(self) -> Iterator[str]:
        keys = {*self._table.data.keys(), *self._dirty}
        return iter([key for key in keys if key in self])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if key in self._dirty:
            return self._dirty[key][1] is not _DELETED
        return key in self._table.data

    def flush(self) -> int:
        """Write every changed key to the store and the changelog; returns how many.

        ``partitions_written`` then holds the changelog partitions this flush wrote to.
        """
        data = self._table.data
        self.partitions_written = {partition for partition, _ in self._dirty.values()}
        for key, (partition, value) in self._dirty.items():
            if value is _DELETED:
                self._table.send_changelog(partition, key, None, value_serializer="raw")
                data.pop(key, None)
            else:
                self._table.send_changelog(partition, key, value)
                data[key] = value
        written = len(self._dirty)
        self._dirty.clear()
        return written
