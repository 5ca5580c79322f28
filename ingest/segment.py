"""The spool's segment file format: framing, checksums, and recovery of a bad tail.

A segment is a file of frames, nothing else (no file header, so a crash can
only ever leave a partial *last* frame)::

    u32 payload length | u32 crc32 | u64 seq | 16 bytes request id | payload

all little-endian. The CRC covers seq, request id and payload, so a torn
write, a zero-filled tail (some file systems after a power cut) or a flipped
bit is caught. Sequence numbers increase by one from the number in the file
name (``<first seq, 20 digits>.seg``).

``scan`` reads a segment and returns its good records plus, when the file ends
in something that is not a good frame, the offset and reason. ``quarantine``
then moves the bad bytes aside (``corrupt/<segment>.<offset>.bad`` with a
``.reason`` file next to it) and truncates the segment to its good prefix:
recovery keeps every good record and never refuses to start.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IIQ16s")
HEADER_BYTES = HEADER.size
#: No envelope comes near this (bodies are capped at 32 MiB); a larger length is corruption.
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
SUFFIX = ".seg"
CORRUPT_DIR = "corrupt"


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The first seq a segment file name encodes, or None if it is not one."""
    stem = name.removesuffix(SUFFIX)
    if not name.endswith(SUFFIX) or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


def encode(seq: int, request_id: bytes, payload: bytes) -> bytes:
    """One frame. ``request_id`` is the 16 raw bytes of the UUID."""
    body = struct.pack("<Q16s", seq, request_id) + payload
    return struct.pack("<II", len(payload), zlib.crc32(body)) + body


@dataclass(frozen=True, slots=True)
class Record:
    """A good frame found by ``scan``: where it is and what it holds."""

    seq: int
    request_id: bytes
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    records: list[Record]
    good_bytes: int
    #: Why the bytes after ``good_bytes`` are not frames; empty if there are none.
    bad_reason: str = ""


def scan(data: bytes, first_seq: int) -> ScanResult:
    """Validate frames from the start of ``data``; stop at the first bad one."""
    records: list[Record] = []
    offset = 0
    expected_seq = first_seq
    while offset < len(data):
        if len(data) - offset < HEADER_BYTES:
            return ScanResult(records, offset, f"truncated header ({len(data) - offset} bytes)")
        length, crc, seq, request_id = HEADER.unpack_from(data, offset)
        if length > MAX_PAYLOAD_BYTES:
            return ScanResult(records, offset, f"implausible record length {length}")
        end = offset + HEADER_BYTES + length
        if end > len(data):
            return ScanResult(records, offset,
                              f"truncated record seq {seq}: {end - len(data)} bytes missing")
        if zlib.crc32(memoryview(data)[offset + 8:end]) != crc:
            return ScanResult(records, offset, f"checksum mismatch at record seq {seq}")
        if seq != expected_seq:
            return ScanResult(records, offset, f"sequence gap: expected {expected_seq}, got {seq}")
        records.append(Record(seq, request_id, offset, end - offset))
        expected_seq += 1
        offset = end
    return ScanResult(records, offset)


def quarantine(path: Path, good_bytes: int, reason: str) -> Path:
    """Move ``path``'s bytes from ``good_bytes`` on aside and truncate it there.

    1. copy the bad tail to ``corrupt/`` and fsync it: the evidence is safe
       before anything is removed;
    2. write the reason next to it;
    3. truncate the segment to its good prefix and fsync: the segment now
       scans clean, so a crash after this step is a no-op on the next start.
    """
    corrupt_dir = path.parent / CORRUPT_DIR
    corrupt_dir.mkdir(exist_ok=True)
    target = corrupt_dir / f"{path.name}.{good_bytes}.bad"
    with open(path, "rb") as source:
        source.seek(good_bytes)
        tail = source.read()
    with open(target, "wb") as out:
        out.write(tail)
        out.flush()
        os.fsync(out.fileno())
    target.with_suffix(".reason").write_text(f"{reason}\n")
    with open(path, "r+b") as segment:
        segment.truncate(good_bytes)
        segment.flush()
        os.fsync(segment.fileno())
    log.warning("spool segment %s: %s; kept %d good bytes, moved %d bad bytes to %s",
                path.name, reason, good_bytes, len(tail), target)
    return target


def move_aside(path: Path, reason: str) -> Path:
    """Move a whole unusable file to ``corrupt/`` with its reason."""
    corrupt_dir = path.parent / CORRUPT_DIR
    corrupt_dir.mkdir(exist_ok=True)
    target = corrupt_dir / f"{path.name}.bad"
    os.replace(path, target)
    target.with_suffix(".reason").write_text(f"{reason}\n")
    log.warning("spool file %s: %s; moved to %s", path.name, reason, target)
    return target


def fsync_dir(directory: Path) -> None:
    """Make file creations, renames and removals in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
