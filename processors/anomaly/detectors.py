"""The detectors a stream runs, built from settings: one call per event, findings out.

``TeamDetectors`` runs on the team-keyed stream (spikes, hourly ceilings,
budget share, novelty); ``ProviderDetectors`` on the provider-keyed one (error bursts).
Both are pure apart from the ``State`` mapping they are handed, and read only
event time, so a replayed month yields the findings live traffic would have.
"""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo

from meterline.schemas import Anomaly, AnomalyThresholds, Settings

from .ceilings import CeilingDetector
from .error_burst import ErrorBurstDetector, ProviderTally
from .novelty import NoveltyDetector
from .observation import Observation
from .share import ShareDetector
from .spikes import SpikeDetector
from .state import State


class TeamDetectors:
    """Spike, ceiling, share and novelty detection for events of one team's partition."""

    def __init__(self, settings: Settings) -> None:
        anomalies = settings.anomalies
        zones = {team.name: team.budget_timezone or settings.timezone for team in settings.teams}
        default_zone = settings.timezone

        @cache
        def zone_for(team: str) -> ZoneInfo:
            return ZoneInfo(zones.get(team, default_zone))

        @cache
        def thresholds_for(team: str) -> AnomalyThresholds:
            return anomalies.thresholds_for(team)

        self._detectors = (SpikeDetector(thresholds_for, zone_for),
                           CeilingDetector(thresholds_for, zone_for),
                           ShareDetector(thresholds_for, zone_for),
                           NoveltyDetector(thresholds_for, zone_for))

    def observe(self, obs: Observation, state: State) -> list[Anomaly]:
        """Update ``state`` with one call; the findings it completes (usually none)."""
        found: list[Anomaly] = []
        for detector in self._detectors:
            found.extend(detector.observe(obs, state))
        return found


class ProviderDetectors:
    """Error-burst detection for events of one provider's partition."""

    def __init__(self, settings: Settings) -> None:
        self._burst = ErrorBurstDetector(settings.anomalies.defaults)

    @property
    def window_minutes(self) -> int:
        return self._burst.window_minutes

    def observe(self, obs: Observation, state: State) -> list[Anomaly]:
        return self._burst.observe(obs, state)

    def observe_tally(self, counted: ProviderTally, state: State) -> list[Anomaly]:
        """A batch's calls of one provider in one window, summed by the routing agent."""
        return self._burst.observe_tally(counted, state)
