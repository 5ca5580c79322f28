"""Faults: the simulated provider failing on purpose for a window of time.

``POST /sim/faults`` with ``{"status": 529, "seconds": 5, "models": ["claude-sonnet-4-5"]}``
makes every call for one of ``models`` (every model when the list is left
out) answer ``status`` in the provider's own error format for ``seconds``,
before anything is generated or billed: a provider overloaded (529, 503) or
rate limiting (429). Faults add up; the first one matching a call answers it.
``GET /sim/faults`` lists the live ones with how many calls each answered;
``DELETE /sim/faults`` clears them all.

Unlike the per-request ``x-sim-status`` knob, a fault needs no cooperation from
the caller, so it fails calls a gateway sends on its own (fallbacks, probes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .knobs import json_response, openai_error

MAX_SECONDS = 3600.0


@dataclass(slots=True)
class Fault:
    """One failure window: ``status`` for the ``models`` (empty: all) until ``until``."""

    status: int
    until: float
    models: frozenset[str]
    answered: int = 0

    def view(self, now: float) -> dict[str, Any]:
        return {"status": self.status, "seconds_left": round(max(self.until - now, 0.0), 3),
                "models": sorted(self.models), "answered": self.answered}


class Faults:
    """The live faults of one simulated provider (one event loop: no lock needed)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults = []

    def live(self) -> list[Fault]:
        now = time.monotonic()
        self._faults = [fault for fault in self._faults if fault.until > now]
        return self._faults

    def status_for(self, model: object) -> int:
        """The status a call for ``model`` must answer now; 0 for none (the usual case)."""
        if not self._faults:
            return 0
        for fault in self.live():
            if not fault.models or model in fault.models:
                fault.answered += 1
                return fault.status
        return 0


def parse_fault(payload: Any) -> Fault:
    """The fault a ``POST /sim/faults`` body asks for; ValueError naming the bad field."""
    if not isinstance(payload, dict):
        raise ValueError('the body must be a JSON object {"status": 529, "seconds": 5}')
    if unknown := payload.keys() - {"status", "seconds", "models"}:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    status, seconds = payload.get("status"), payload.get("seconds")
    if type(status) is not int or not 400 <= status <= 599:
        raise ValueError(f"status: must be an error status 400-599, got {status!r}")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not (
            0 < seconds <= MAX_SECONDS):
        raise ValueError(f"seconds: must be a number in (0, {MAX_SECONDS:g}], got {seconds!r}")
    models = payload.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ValueError("models: must be a list of model names")
    return Fault(status, time.monotonic() + seconds, frozenset(models))


def fault_routes(faults: Faults) -> list[Route]:
    """``/sim/faults``: POST adds a fault, GET lists the live ones, DELETE clears them."""

    async def add(request: Request) -> Response:
        try:
            fault = parse_fault(orjson.loads(await request.body()))
        except (orjson.JSONDecodeError, ValueError) as exc:
            return openai_error(400, str(exc))
        faults.add(fault)
        return json_response(fault.view(time.monotonic()), 201)

    async def listed(request: Request) -> Response:
        now = time.monotonic()
        return json_response({"faults": [fault.view(now) for fault in faults.live()]})

    async def clear(request: Request) -> Response:
        faults.clear()
        return Response(status_code=204)

    return [Route("/sim/faults", add, methods=["POST"]),
            Route("/sim/faults", listed, methods=["GET"]),
            Route("/sim/faults", clear, methods=["DELETE"])]
