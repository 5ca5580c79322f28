"""Absolute hourly ceilings on a key's and a user's spend and requests: no baseline needed.

Spikes are judged only after ``min_baseline_days`` of history, so a key minted
this morning that loops tonight would go unreported for days.
``CeilingDetector.observe`` adds each call to its key's and its user's UTC hour
and finds the hour whose spend or request count passes the team's ceiling
(``key_hourly_spend_usd``, ``key_hourly_requests``, ``user_hourly_spend_usd``,
``user_hourly_requests``; 0 disables one), from the first call of a key's life.

Key layout (under the team, so on the team's partition):
``c|team|kind|entity|HH`` (``HH`` the UTC hour of day) → that hour's entries
on recent days, ``[utc day, spend_usd, requests, found]`` as in ``baseline``
(``found``: bit 1 the request ceiling, bit 2 the spend ceiling). No baseline is
read, so a record keeps only ``baseline.prune``'s week of margin for late
events: at most 8 entries. Each call writes one record per entity (key, user),
none for an entity whose ceilings are all disabled.

One finding per (entity, hour, ceiling): the found bit stays in the hour's
entry, so neither the rest of the hour nor a restarted detector (its table
restored from the changelog) finds it again, and a batch re-processed after a
crash re-emits the same anomaly id. When a key's hour passes a ceiling, its
user's same hour is marked covered for that ceiling, as the spikes do: a
runaway key raises one finding per ceiling, naming key, user and team.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from meterline.schemas import Anomaly, AnomalyThresholds

from .baseline import record_with_call
from .observation import Observation
from .spikes import amount
from .state import State, ThresholdsFor, ZoneFor

CeilingKind = Literal["request_ceiling", "spend_ceiling"]
Subject = Literal["key", "user"]
_BITS: dict[CeilingKind, int] = {"request_ceiling": 1, "spend_ceiling": 2}
_COLUMNS: dict[CeilingKind, int] = {"request_ceiling": 2, "spend_ceiling": 1}
_UNITS: dict[CeilingKind, str] = {"request_ceiling": "requests", "spend_ceiling": "usd"}
_SETTINGS: dict[Subject, dict[CeilingKind, str]] = {
    "key": {"request_ceiling": "key_hourly_requests", "spend_ceiling": "key_hourly_spend_usd"},
    "user": {"request_ceiling": "user_hourly_requests", "spend_ceiling": "user_hourly_spend_usd"},
}


class Ceiling(NamedTuple):
    """One enabled ceiling: the finding it makes, the setting it comes from, its value."""

    kind: CeilingKind
    setting: str
    value: float


def enabled_ceilings(th: AnomalyThresholds, subject: Subject) -> list[Ceiling]:
    """The key's (user's) ceilings that are not 0, requests first."""
    ceilings = [Ceiling(kind, setting, float(getattr(th, setting)))
                for kind, setting in _SETTINGS[subject].items()]
    return [ceiling for ceiling in ceilings if ceiling.value > 0]


class CeilingDetector:
    """Judges every call's UTC hour against its key's and its user's ceilings."""

    def __init__(self, thresholds_for: ThresholdsFor, zone_for: ZoneFor) -> None:
        self._thresholds_for = thresholds_for
        self._zone_for = zone_for

    def observe(self, obs: Observation, state: State) -> list[Anomaly]:
        th = self._thresholds_for(obs.team)
        hour = obs.at.replace(minute=0, second=0, microsecond=0)
        subjects: list[tuple[Subject, str]] = [("key", obs.key_id), ("user", obs.user)]
        found: list[Anomaly] = []
        covered = 0
        for subject, entity in subjects:
            ceilings = enabled_ceilings(th, subject)
            if not ceilings:
                continue
            key = f"c|{obs.team}|{subject}|{entity}|{hour:%H}"
            record, entry = record_with_call(state.get(key), hour.date().toordinal(),
                                             obs.cost_usd, keep_days=0)
            entry[3] = int(entry[3]) | covered
            for ceiling in ceilings:
                anomaly = self._judge(obs, ceiling, subject, entity, entry, hour)
                if anomaly is not None:
                    found.append(anomaly)
                    covered |= _BITS[ceiling.kind]
            state[key] = record
        return found

    def _judge(self, obs: Observation, ceiling: Ceiling, subject: Subject, entity: str,
               entry: list[Any], hour: datetime) -> Anomaly | None:
        """The finding if this call took the hour past the ceiling (marked found), else None."""
        bit = _BITS[ceiling.kind]
        observed = float(entry[_COLUMNS[ceiling.kind]])
        if int(entry[3]) & bit or observed <= ceiling.value:
            return None
        entry[3] = int(entry[3]) | bit
        return self._finding(obs, ceiling, subject, entity, entry, hour)

    def _finding(self, obs: Observation, ceiling: Ceiling, subject: Subject, entity: str,
                 entry: list[Any], hour: datetime) -> Anomaly:
        observed = float(entry[_COLUMNS[ceiling.kind]])
        unit = _UNITS[ceiling.kind]
        zone = self._zone_for(obs.team)
        who = f"key {entity} of {obs.user}" if subject == "key" else f"user {entity}"
        summary = (f"{who} ({obs.team}): {amount(observed, unit)} in the hour from "
                   f"{hour.astimezone(zone):%a %d %b %H:%M} {zone.key}, above the ceiling of "
                   f"{amount(ceiling.value, unit)} an hour ({ceiling.setting})")
        return Anomaly.build(
            kind=ceiling.kind, severity="critical" if observed >= 2 * ceiling.value else "warning",
            team=obs.team, entity_kind=subject, entity=entity, unit=unit,
            observed=round(observed, 6), expected=0.0, threshold=ceiling.value,
            window_start=hour, window_end=hour + timedelta(hours=1), detected_at=obs.at,
            summary=summary,
            evidence={"span": "hour", "setting": ceiling.setting, "user": obs.user,
                      "key_id": obs.key_id, "hour_requests": int(entry[2]),
                      "hour_usd": round(float(entry[1]), 6), "model": obs.model,
                      "tool": obs.tool, "request_id": obs.request_id})
