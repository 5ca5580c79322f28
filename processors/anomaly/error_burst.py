"""Provider error-rate bursts in short event-time windows.

``ErrorBurstDetector.observe`` counts calls and provider errors (5xx, 429,
upstream timeouts) per provider in fixed ``error_window_minutes`` windows
aligned to the epoch, and finds a window once its error rate passes
``error_rate`` with at least ``error_min_requests`` calls. Provider trouble
is everyone's, so the finding's team is empty: it goes to the operator
channel. Thresholds are the defaults' (a provider is not a team's).

Counting is done where events are re-keyed: the routing agent sums each
batch's calls per (provider, window) into one ``ProviderTally``, so the
provider stream carries a few tallies per batch instead of every call; a
finding's ``detected_at`` is then the last call of the tally that crossed the
threshold (at most one routing batch late).

Key layout: ``e|provider`` → ``{"w": {window start (epoch s): [calls, errors,
found]}, "n": calls, "e": errors}``, the last ``KEEP_WINDOWS`` windows only,
plus lifetime totals that give the expected rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from meterline.schemas import Anomaly, AnomalyThresholds

from .observation import Observation
from .state import State

KEEP_WINDOWS = 12


@dataclass(frozen=True, slots=True)
class ProviderTally:
    """Calls and provider errors of one provider in one window, as one batch saw them."""

    provider: str
    window_start_s: int
    calls: int
    errors: int
    last_at: datetime
    model: str

    def to_wire(self) -> bytes:
        return orjson.dumps([self.provider, self.window_start_s, self.calls, self.errors,
                             self.last_at.timestamp(), self.model])

    @classmethod
    def from_wire(cls, value: bytes) -> ProviderTally:
        provider, start_s, calls, errors, last_s, model = orjson.loads(value)
        return cls(str(provider), int(start_s), int(calls), int(errors),
                   datetime.fromtimestamp(float(last_s), tz=UTC), str(model))


def tally(observations: Iterable[Observation], window_minutes: int) -> list[ProviderTally]:
    """Sum calls and errors per (provider, window); pure."""
    window_s = window_minutes * 60
    sums: dict[tuple[str, int], list[Any]] = {}
    for obs in observations:
        start_s = int(obs.at.timestamp()) // window_s * window_s
        counts = sums.setdefault((obs.provider, start_s), [0, 0, obs.at, obs.model])
        counts[0] += 1
        counts[1] += int(obs.provider_error)
        if obs.at > counts[2]:
            counts[2], counts[3] = obs.at, obs.model
    return [ProviderTally(provider, start_s, calls, errors, last_at, model)
            for (provider, start_s), (calls, errors, last_at, model) in sums.items()]


class ErrorBurstDetector:
    """Finds windows in which one provider fails a large share of calls."""

    def __init__(self, thresholds: AnomalyThresholds) -> None:
        self._th = thresholds

    @property
    def window_minutes(self) -> int:
        return self._th.error_window_minutes

    def observe(self, obs: Observation, state: State) -> list[Anomaly]:
        """One call (tests, the benchmark): a tally of one."""
        return self.observe_tally(tally([obs], self._th.error_window_minutes)[0], state)

    def observe_tally(self, counted: ProviderTally, state: State) -> list[Anomaly]:
        window_s = self._th.error_window_minutes * 60
        key = f"e|{counted.provider}"
        stored: dict[str, Any] = state.get(key) or {}
        windows = {name: list(counts) for name, counts in stored.get("w", {}).items()}
        counts = windows.setdefault(str(counted.window_start_s), [0, 0, 0])
        counts[0] += counted.calls
        counts[1] += counted.errors
        total_n = int(stored.get("n", 0)) + counted.calls
        total_e = int(stored.get("e", 0)) + counted.errors
        newest = max(int(name) for name in windows)
        windows = {name: value for name, value in windows.items()
                   if int(name) > newest - KEEP_WINDOWS * window_s}
        found: list[Anomaly] = []
        calls, errors, already = counts
        rate = errors / calls
        if not already and calls >= self._th.error_min_requests and rate >= self._th.error_rate:
            counts[2] = 1
            start = datetime.fromtimestamp(counted.window_start_s, tz=UTC)
            expected = (total_e - errors) / max(total_n - calls, 1)
            found.append(Anomaly.build(
                kind="error_burst", severity="critical" if rate >= 0.9 else "warning", team="",
                entity_kind="provider", entity=counted.provider, unit="error_rate",
                observed=round(rate, 4), expected=round(expected, 4),
                threshold=self._th.error_rate, window_start=start,
                window_end=start + timedelta(seconds=window_s), detected_at=counted.last_at,
                summary=(f"provider {counted.provider} failed {errors} of {calls} calls "
                         f"({rate:.0%}) in the {self._th.error_window_minutes} minutes from "
                         f"{start:%d %b %H:%M} UTC; usually {expected:.1%}"),
                evidence={"calls": calls, "errors": errors, "model": counted.model}))
        state[key] = {"w": windows, "n": total_n, "e": total_e}
        return found
