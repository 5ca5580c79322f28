"""Circuit breakers: one per target (provider and model), so a failing one is skipped.

A breaker is ``closed`` while its target answers. After
``gateway.breaker_failures`` failures in a row (429, 5xx, unreachable, timed
out: what ``fallback`` retries) it is ``open``: calls skip the target for
``gateway.breaker_open_s``. Then it is ``half_open``: the next call through is
a probe, and the others keep skipping the target until it answers. A probe
that succeeds closes the breaker; one that fails opens it again for another
``breaker_open_s``. A probe that never reports (its client left) is replaced
by another after ``breaker_open_s``.

Any answer that is not a failure counts as a success: a 400 says the target is
up. Breakers live in one gateway process; each instance learns on its own.
Every change of state is passed to ``on_change`` (the metrics and the log).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
#: ``on_change(provider, model, new_state)``.
OnChange = Callable[[str, str, BreakerState], None]


class Breaker:
    """One target's breaker; ``admit`` before sending, then ``succeeded`` or ``failed``."""

    __slots__ = (
        "_clock",
        "_failures",
        "_limit",
        "_on_change",
        "_open_s",
        "_probe_at",
        "_since",
        "model",
        "provider",
        "state",
    )

    def __init__(self, provider: str, model: str, failures: int, open_s: float,
                 clock: Callable[[], float], on_change: OnChange) -> None:
        self.provider, self.model = provider, model
        self.state: BreakerState = "closed"
        self._limit, self._open_s = failures, open_s
        self._clock, self._on_change = clock, on_change
        self._failures = 0
        self._since = 0.0  # when it opened
        self._probe_at: float | None = None  # when the half-open probe was let through

    def admit(self) -> bool:
        """Whether a call may go to the target now (claiming the probe when half-open)."""
        if self.state == "closed":
            return True
        now = self._clock()
        if self.state == "open":
            if now - self._since < self._open_s:
                return False
            self._change("half_open")
        elif self._probe_at is not None and now - self._probe_at < self._open_s:
            return False  # the probe is out
        self._probe_at = now
        return True

    def succeeded(self) -> None:
        self._failures = 0
        if self.state != "closed":
            self._change("closed")

    def failed(self) -> None:
        self._failures += 1
        if self.state == "closed" and self._failures < self._limit:
            return
        self._since = self._clock()  # a call sent while open (every target was) re-arms it
        if self.state != "open":
            self._change("open")

    def _change(self, state: BreakerState) -> None:
        self.state = state
        self._probe_at = None
        self._on_change(self.provider, self.model, state)


class Breakers:
    """Every target's breaker in this process, made on first use."""

    def __init__(self, failures: int, open_s: float, on_change: OnChange,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._failures, self._open_s = failures, open_s
        self._on_change, self._clock = on_change, clock
        self._breakers: dict[tuple[str, str], Breaker] = {}

    def get(self, provider: str, model: str) -> Breaker:
        breaker = self._breakers.get((provider, model))
        if breaker is None:
            breaker = self._breakers[(provider, model)] = Breaker(
                provider, model, self._failures, self._open_s, self._clock, self._on_change)
        return breaker
