"""Request ids: time-ordered, unique, sortable as text (UUIDv7, RFC 9562).

A request id is minted once by the gateway when a call arrives and is the
identity every later stage counts by: the envelope key, the event key, the
ClickHouse dedupe key. Ordering by id orders by arrival time to the millisecond.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime


def new_request_id(now_ms: int | None = None) -> str:
    """Return a fresh UUIDv7 string; ``now_ms`` pins the timestamp (simulation, tests)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b (62 bits)
    return str(uuid.UUID(int=value))


def request_id_time(request_id: str) -> datetime:
    """The arrival time encoded in a UUIDv7 request id."""
    ms = uuid.UUID(request_id).int >> 80
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
