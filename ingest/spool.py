"""The gateway's durable spool: a write-ahead log of envelopes, truncated behind the sink.

Every envelope is appended here before it is produced, and stays until the
sink confirms its request id is stored in ClickHouse (``confirm``), because
the broker is not a durable copy (tansu keeps topics in memory only).

- ``append`` runs on the event loop and must cost microseconds: it frames the
  record (``ingest.segment``) and ``write``s it to the active segment, so once
  it returns the record survives the process being killed (SIGKILL). It never
  waits for the disk: a background thread fsyncs what was appended every
  ``fsync_interval_s`` (group commit), so a power cut can lose at most that
  window. It raises ``SpoolFull`` past ``max_bytes`` and ``OSError`` if the
  disk refuses; the caller stays fail-open.
- ``confirm`` marks request ids as stored; ``release`` deletes closed segments
  with nothing outstanding. A segment whose last record is more than
  ``unconfirmed_grace_s`` older than the newest confirmed id (its stragglers
  were dead-lettered, or their confirmations lost) is moved aside to
  ``unconfirmed/`` with a logged reason instead of pinning the spool forever.
- ``outstanding_from`` and ``read`` serve replay, in seq order.
- Opening recovers: good records of every segment are indexed as outstanding,
  a bad tail is moved aside (``segment.quarantine``), start-up never fails on
  a damaged file. A lock file keeps a second process off the same directory.

The index of outstanding records is compact (``ingest.spool_index``): about
25 bytes an envelope once its segment is sealed, so a long store outage
costs disk, not memory.

Locks: ``_lock`` guards the in-memory index and is held only for dict and
``write`` work. ``_io_lock`` serialises fsync, reads and closing descriptors,
so a descriptor is never closed (and its number reused) under a read or fsync.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import segment as fmt
from .spool_index import SealedRanges, SegmentIndex

log = logging.getLogger(__name__)

CONFIRM_CHUNK = 512
UNCONFIRMED_DIR = "unconfirmed"


class SpoolError(Exception):
    """Base of the spool's errors."""


class SpoolFull(SpoolError):
    """Appending would take the spool past its byte cap."""


class SpoolLocked(SpoolError):
    """Another process holds this spool directory: a configuration error."""


def id_time_ms(request_id: bytes) -> int:
    """Milliseconds since the epoch encoded in a UUIDv7's first 48 bits."""
    return int.from_bytes(request_id[:6], "big")


@dataclass(slots=True)
class _Segment:
    first_seq: int
    path: Path
    fd: int
    opened_at: float
    index: SegmentIndex
    size: int = 0
    synced_size: int = 0
    next_seq: int = 0
    last_time_ms: int = 0

    @property
    def outstanding(self) -> int:
        return self.index.outstanding


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """A consistent snapshot for metrics and /readyz."""

    depth: int
    bytes: int
    max_bytes: int
    segments: int
    alarm: bool
    appended: int
    confirmed: int
    unsynced: int
    fsyncs: int
    quarantined: int
    abandoned: int


class Spool:
    def __init__(self, directory: Path, *, segment_bytes: int = 8 << 20,
                 segment_max_age_s: float = 30.0, max_bytes: int = 2 << 30,
                 alarm_ratio: float = 0.8, fsync_interval_s: float = 0.02,
                 unconfirmed_grace_s: float = 3600.0) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._segment_max_age_s = segment_max_age_s
        self._max_bytes = max_bytes
        self._alarm_bytes = int(max_bytes * alarm_ratio)
        self._grace_ms = int(unconfirmed_grace_s * 1000)
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._active: _Segment | None = None
        self._firsts: list[int] = []  # first seqs of ``_segments``, sorted, for ``read``
        self._sealed = SealedRanges([])
        self._depth = 0
        self._next_seq = 1
        self._bytes = 0
        self._max_confirmed_ms = 0
        self._alarm = False
        self._dir_dirty = False
        self.appended = self.confirmed = self.fsyncs = self.quarantined = self.abandoned = 0
        self._synced_seq = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLocked(f"spool {directory} is in use by another process") from None
        self._recover()
        self._stop = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, args=(fsync_interval_s,),
                                        name="spool-fsync", daemon=True)
        self._syncer.start()

    # -- recovery ---------------------------------------------------------------------------

    def _recover(self) -> None:
        for path in sorted(self.directory.glob(f"*{fmt.SUFFIX}")):
            first_seq = fmt.parse_segment_name(path.name)
            if first_seq is None or first_seq < self._next_seq:
                fmt.move_aside(path, "not a segment name, or overlaps an earlier segment")
                self.quarantined += 1
                continue
            result = fmt.scan(path.read_bytes(), first_seq)
            if result.bad_reason:
                fmt.quarantine(path, result.good_bytes, result.bad_reason)
                self.quarantined += 1
            if not result.records:
                path.unlink()
                continue
            seg = _Segment(first_seq, path, os.open(path, os.O_RDWR | os.O_APPEND),
                           time.monotonic(), SegmentIndex(), size=result.good_bytes,
                           synced_size=result.good_bytes, next_seq=result.records[-1].seq + 1)
            for record in result.records:
                self._index(seg, record.offset, record.request_id)
            seg.index.seal()
            self._segments[first_seq] = seg
            self._bytes += seg.size
            self._next_seq = seg.next_seq
        self._synced_seq = self._next_seq - 1
        self._reindex()
        if self._depth:
            log.info("spool %s: recovered %d outstanding envelopes in %d segments",
                     self.directory, self._depth, len(self._segments))

    def _index(self, seg: _Segment, offset: int, request_id: bytes) -> None:
        seg.index.add(offset, request_id)
        self._depth += 1
        seg.last_time_ms = max(seg.last_time_ms, id_time_ms(request_id))

    def _reindex(self) -> None:
        """After segments come or go: the sorted first seqs and the sealed id ranges."""
        self._firsts = sorted(self._segments)
        self._sealed = SealedRanges([self._segments[first].index for first in self._firsts
                                     if self._segments[first].index.sealed])

    def _close_active(self) -> None:
        """The active segment takes no more appends: seal its index."""
        if self._active is not None:
            self._active.index.seal()
            self._active = None
            self._reindex()

    # -- the request path -------------------------------------------------------------------

    def append(self, request_id: bytes, payload: bytes) -> int:
        """Write one record; returns its seq. Never waits for fsync (see module doc)."""
        size = fmt.HEADER_BYTES + len(payload)
        with self._lock:
            if self._bytes + size > self._max_bytes:
                raise SpoolFull(f"spool at {self._bytes} of {self._max_bytes} bytes")
            seg = self._active
            if seg is None or seg.size >= self._segment_bytes:
                self._close_active()
                seg = self._open_segment()
            seq = self._next_seq
            frame = fmt.encode(seq, request_id, payload)
            written = os.write(seg.fd, frame)
            if written != size:
                os.ftruncate(seg.fd, seg.size)  # keep the file framed: drop the torn frame
                raise OSError(f"short write to {seg.path.name}: {written} of {size} bytes")
            self._index(seg, seg.size, request_id)
            seg.size += size
            seg.next_seq = self._next_seq = seq + 1
            self._bytes += size
            self.appended += 1
            if not self._alarm and self._bytes >= self._alarm_bytes:
                self._alarm = True
                log.error("spool alarm: %d of %d bytes used; envelopes are not being confirmed",
                          self._bytes, self._max_bytes)
            return seq

    def _open_segment(self) -> _Segment:
        path = self.directory / fmt.segment_name(self._next_seq)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        seg = _Segment(self._next_seq, path, fd, time.monotonic(), SegmentIndex(),
                       next_seq=self._next_seq)
        self._segments[seg.first_seq] = seg
        self._firsts.append(seg.first_seq)  # the highest first seq yet
        self._active = seg
        self._dir_dirty = True
        return seg

    # -- replay -----------------------------------------------------------------------------

    def first_outstanding(self) -> int | None:
        """The lowest seq not yet confirmed, or None when everything is."""
        with self._lock:
            for first in self._firsts:
                seg = self._segments[first]
                if seg.outstanding:
                    return first + seg.index.outstanding_positions(0, 1)[0]
        return None

    def outstanding_from(self, seq: int, limit: int) -> list[int]:
        """Up to ``limit`` outstanding seqs >= ``seq``, in order."""
        found: list[int] = []
        with self._lock:
            for first in self._firsts:
                seg = self._segments[first]
                if seg.next_seq <= seq or not seg.outstanding:
                    continue
                positions = seg.index.outstanding_positions(seq - first, limit - len(found))
                found.extend(first + position for position in positions)
                if len(found) >= limit:
                    break
        return found

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def read(self, seq: int) -> tuple[bytes, bytes] | None:
        """(request id, payload) of an outstanding record; None once confirmed or bad."""
        with self._io_lock:
            with self._lock:
                at = bisect.bisect_right(self._firsts, seq) - 1
                seg = self._segments[self._firsts[at]] if at >= 0 else None
                if seg is None or not seg.index.is_outstanding(seq - seg.first_seq):
                    return None
                offset, size = seg.index.frame(seq - seg.first_seq, seg.size)
            frame = os.pread(seg.fd, size, offset)
        result = fmt.scan(frame, seq)
        if result.bad_reason or not result.records:
            log.error("spool record seq %d in %s unreadable (%s); skipped", seq, seg.path.name,
                      result.bad_reason)
            return None
        return result.records[0].request_id, frame[fmt.HEADER_BYTES:]

    # -- truncation -------------------------------------------------------------------------

    def confirm(self, request_ids: Iterable[bytes]) -> int:
        """Mark ids stored by the sink; ids this spool never held are ignored."""
        matched = 0
        ids = list(request_ids)
        for start in range(0, len(ids), CONFIRM_CHUNK):
            with self._lock:
                for request_id in ids[start:start + CONFIRM_CHUNK]:
                    self._max_confirmed_ms = max(self._max_confirmed_ms, id_time_ms(request_id))
                    if self._confirm_one(request_id):
                        matched += 1
        self.confirmed += matched
        return matched

    def _confirm_one(self, request_id: bytes) -> bool:
        """Under ``_lock``: the active segment first (where most confirmations land)."""
        active = self._active
        found = active is not None and active.index.confirm(request_id)
        if not found:
            found = any(index.confirm(request_id)
                        for index in self._sealed.candidates(request_id))
        self._depth -= found
        return found

    def release(self) -> int:
        """Delete fully confirmed closed segments, move stale ones aside; returns how many."""
        with self._io_lock:
            with self._lock:
                done = [s for s in self._segments.values()
                        if s is not self._active and not s.outstanding]
                stale = [s for s in self._segments.values() if s is not self._active
                         and s.outstanding and s.last_time_ms + self._grace_ms
                         <= self._max_confirmed_ms]
                for seg in done + stale:
                    self._depth -= seg.outstanding
                    del self._segments[seg.first_seq]
                    self._bytes -= seg.size
                    os.close(seg.fd)
                if done or stale:
                    self._reindex()
                if self._alarm and self._bytes < self._alarm_bytes:
                    self._alarm = False
                    log.warning("spool alarm cleared: %d bytes used", self._bytes)
            for seg in done:
                seg.path.unlink()
            for seg in stale:
                self._abandon(seg)
            if done or stale:
                fmt.fsync_dir(self.directory)
        return len(done) + len(stale)

    def _abandon(self, seg: _Segment) -> None:
        target_dir = self.directory / UNCONFIRMED_DIR
        target_dir.mkdir(exist_ok=True)
        os.replace(seg.path, target_dir / seg.path.name)
        reason = (f"{seg.outstanding} envelopes unconfirmed more than {self._grace_ms} ms after "
                  "later ones were stored (dead-lettered, or confirmation lost)")
        (target_dir / seg.path.name).with_suffix(".reason").write_text(reason + "\n")
        self.abandoned += seg.outstanding
        log.error("spool segment %s moved to %s/: %s", seg.path.name, UNCONFIRMED_DIR, reason)

    # -- group commit -----------------------------------------------------------------------

    def sync(self) -> None:
        """fsync every segment written since the last call (and the directory if needed)."""
        with self._io_lock:
            with self._lock:
                active = self._active
                if (active is not None and active.size
                        and time.monotonic() - active.opened_at >= self._segment_max_age_s):
                    self._close_active()  # closed by age: releasable once confirmed
                dirty = [(seg, seg.size) for seg in self._segments.values()
                         if seg.synced_size < seg.size]
                dir_dirty, self._dir_dirty = self._dir_dirty, False
                last_seq = self._next_seq - 1
            for seg, _ in dirty:
                os.fdatasync(seg.fd)
            if dir_dirty:
                fmt.fsync_dir(self.directory)
            with self._lock:
                for seg, size in dirty:
                    seg.synced_size = max(seg.synced_size, size)
                self._synced_seq = last_seq
                self.fsyncs += len(dirty)

    def _sync_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.sync()
            except OSError:
                log.exception("spool fsync failed; retrying in %.3fs", interval_s)

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(depth=self._depth, bytes=self._bytes, max_bytes=self._max_bytes,
                              segments=len(self._segments), alarm=self._alarm,
                              appended=self.appended, confirmed=self.confirmed,
                              unsynced=self._next_seq - 1 - self._synced_seq, fsyncs=self.fsyncs,
                              quarantined=self.quarantined, abandoned=self.abandoned)

    def close(self) -> None:
        """Stop the fsync thread, fsync everything, release the directory."""
        self._stop.set()
        self._syncer.join()
        self.sync()
        with self._io_lock, self._lock:
            for seg in self._segments.values():
                os.close(seg.fd)
            self._segments.clear()
            self._active = None
        os.close(self._lock_fd)
