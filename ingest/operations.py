"""Operational endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

- ``/healthz`` answers 200 while the process serves HTTP (liveness).
- ``/readyz`` answers 200 when the broker answers a metadata request within
  two seconds, else 503 with ``"status": "degraded"``. The gateway keeps
  serving calls either way (envelopes are spooled); readiness says whether
  envelopes are flowing, so start-up waits on tansu are visible, not hidden.
- ``/metrics`` is the Prometheus exposition of ``GatewayMetrics``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .emitter import EnvelopeEmitter
from .metrics import GatewayMetrics

Send = Callable[[dict[str, Any]], Awaitable[None]]
Endpoint = Callable[[Send], Awaitable[None]]

_READY_PROBE_TIMEOUT_S = 2.0


async def send_bytes(send: Send, status: int, body: bytes,
                     content_type: bytes = b"application/json",
                     extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
        *extra_headers]})
    await send({"type": "http.response.body", "body": body})


def operations(emitter: EnvelopeEmitter, metrics: GatewayMetrics) -> dict[str, Endpoint]:
    """The three endpoints by path, each answering GET."""

    async def healthz(send: Send) -> None:
        await send_bytes(send, 200, b'{"status":"ok"}')

    async def readyz(send: Send) -> None:
        broker_ok = await asyncio.to_thread(emitter.broker_reachable, _READY_PROBE_TIMEOUT_S)
        detail: dict[str, Any] = {
            "status": "ready" if broker_ok else "degraded",
            "broker": "reachable" if broker_ok else "unreachable",
            "envelopes_pending": emitter.pending(),
            "envelopes_failed": getattr(emitter, "failed", 0)}
        stats = getattr(emitter, "stats", None)
        if callable(stats):
            detail["delivery"] = stats()
        await send_bytes(send, 200 if broker_ok else 503, orjson.dumps(detail))

    async def prometheus(send: Send) -> None:
        await send_bytes(send, 200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST.encode())

    return {"/healthz": healthz, "/readyz": readyz, "/metrics": prometheus}
