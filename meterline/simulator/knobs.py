"""Per-request behaviour switches of the simulated provider, read from headers.

Tests and the demo steer the simulator through ``x-sim-*`` request headers
(the gateway forwards them like any provider header):

- ``x-sim-latency-ms``: wait this long before answering;
- ``x-sim-status``: answer with this error status, in the provider's error
  format (429 also carries ``retry-after`` and rate-limit headers);
- ``x-sim-no-usage``: leave usage out of the answer (whole or streamed);
- ``x-sim-cut-after``: stream only this many events, then drop the connection
  without finishing the response (a provider failing mid-stream);
- ``x-sim-stall-ms``: pause this long after the first streamed event;
- ``x-sim-spaced-json``: write streamed chat chunks as Python's ``json.dumps``
  does (``"choices": []``), as llama-cpp-python's server and many shims do;
- ``x-sim-broken-tool-json``: write a chat tool call's arguments as JSON cut
  short, as a model sometimes does.

One switch is not per request but a window of time, set on the provider itself
(``faults``): ``POST /sim/faults {"status": 529, "seconds": 5, "models":
["claude-sonnet-4-5"]}`` makes every call for those models (all, without
``models``) answer that status in the provider's error format (as
``x-sim-status`` does) for that many seconds; ``GET /sim/faults`` lists the live
faults, ``DELETE /sim/faults`` clears them. A gateway's own retries and probes
meet it too, which no request header can arrange.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import orjson
from starlette.responses import Response, StreamingResponse


class SimulatedCut(Exception):
    """Raised inside a stream to drop the connection mid-response."""


@dataclass(frozen=True, slots=True)
class Knobs:
    latency_ms: float = 0.0
    status: int = 0
    no_usage: bool = False
    cut_after: int = -1
    stall_ms: float = 0.0
    spaced_json: bool = False
    broken_tool_json: bool = False

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Knobs:
        return cls(latency_ms=float(headers.get("x-sim-latency-ms") or 0),
                   status=int(headers.get("x-sim-status") or 0),
                   no_usage=bool(headers.get("x-sim-no-usage")),
                   cut_after=int(headers.get("x-sim-cut-after") or -1),
                   stall_ms=float(headers.get("x-sim-stall-ms") or 0),
                   spaced_json=bool(headers.get("x-sim-spaced-json")),
                   broken_tool_json=bool(headers.get("x-sim-broken-tool-json")))


def json_response(data: object, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json",
                    headers=headers)


def openai_error(status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> Response:
    return json_response({"error": {"message": message, "type": kind, "param": param,
                                    "code": code}}, status)


def anthropic_error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    return json_response({"type": "error", "error": {"type": kind, "message": message}}, status)


def simulated_error(status: int, anthropic: bool) -> Response:
    """The error a provider answers with ``status``, in its own format and headers."""
    headers: dict[str, str] = {}
    if status == 429:
        headers["retry-after"] = "1"
        prefix = "anthropic-ratelimit-requests-" if anthropic else "x-ratelimit-"
        headers[prefix + "remaining" if anthropic else prefix + "remaining-requests"] = "0"
    if anthropic:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        body: dict[str, object] = {"type": "error", "error": {
            "type": kind, "message": f"Simulated {kind} ({status})."}}
    else:
        kind = {429: "rate_limit_exceeded", 400: "invalid_request_error",
                401: "invalid_request_error"}.get(status, "server_error")
        body = {"error": {"message": f"Simulated {kind} ({status}).", "type": kind,
                          "param": None, "code": kind}}
    return json_response(body, status, headers)


async def apply_delay(knobs: Knobs) -> None:
    if knobs.latency_ms:
        await asyncio.sleep(knobs.latency_ms / 1000)


def sse_response(events: list[bytes], knobs: Knobs) -> StreamingResponse:
    """Stream pre-framed SSE events, honouring the cut and stall knobs."""

    async def body() -> AsyncIterator[bytes]:
        for index, event in enumerate(events):
            if index == knobs.cut_after:
                raise SimulatedCut(f"stream cut after {index} events")
            yield event
            if index == 0 and knobs.stall_ms:
                await asyncio.sleep(knobs.stall_ms / 1000)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})
