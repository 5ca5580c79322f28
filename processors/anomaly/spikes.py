"""Spend-rate and request-rate spikes per key, user and team, against their own baseline.

``SpikeDetector.observe`` adds one call to its entities' current hour (and
the team's current day) and judges it at once, so a runaway agent is caught
minutes into the hour in which it runs away, not when the hour closes.

Key layout (all under the team, so they live on the team's partition):

- ``f|team|kind|entity``: first local day the entity was seen (an int);
- ``s|team|kind|entity|slot``: the slot's day entries (see ``baseline``),
  at most ~3.5 x ``baseline_days`` entries of four numbers.

Each call writes one slot record per entity (key, user, team, team-day):
four small values, whatever the history length.

One finding per cause: entities are judged from the narrowest (key) to the
widest (team); when a key's hour is a spike, its user's and team's same hour
are marked as covered for that kind, so a looping agent raises one request
spike and one spend spike, each naming the key, user and team.
"""

from __future__ import annotations

from typing import Any, Literal

from meterline.schemas import Anomaly, EntityKind

from .baseline import (
    baseline_samples,
    day_start_utc,
    local_day_and_slot,
    record_with_call,
    robust,
    slot_of,
)
from .observation import Observation
from .state import State, ThresholdsFor, ZoneFor

SpikeKind = Literal["request_spike", "spend_spike"]
_BITS: dict[SpikeKind, int] = {"request_spike": 1, "spend_spike": 2}
_COLUMNS: dict[SpikeKind, int] = {"request_spike": 2, "spend_spike": 1}


class SpikeDetector:
    """Judges every call's hour (and its team's day) against the entity's baseline."""

    def __init__(self, thresholds_for: ThresholdsFor, zone_for: ZoneFor) -> None:
        self._thresholds_for = thresholds_for
        self._zone_for = zone_for

    def observe(self, obs: Observation, state: State) -> list[Anomaly]:
        zone = self._zone_for(obs.team)
        day, weekend, hour = local_day_and_slot(obs.at, zone)
        entities: list[tuple[EntityKind, str]] = [("key", obs.key_id), ("user", obs.user),
                                                  ("team", obs.team)]
        found: list[Anomaly] = []
        covered = 0
        for entity_kind, entity in entities:
            first_day = _first_day(state, f"f|{obs.team}|{entity_kind}|{entity}", day)
            key = f"s|{obs.team}|{entity_kind}|{entity}|{slot_of(weekend, hour)}"
            record, entry = self._add(state, key, day, obs)
            entry[3] |= covered
            for kind in ("request_spike", "spend_spike"):
                anomaly = self._judge(obs, kind, entity_kind, entity, record, entry, day,
                                      first_day, hour)
                if anomaly is not None:
                    found.append(anomaly)
                    covered |= _BITS[kind]
            state[key] = record
        team_first = _first_day(state, f"f|{obs.team}|team|{obs.team}", day)
        day_key = f"s|{obs.team}|team|{obs.team}|{slot_of(weekend, None)}"
        record, entry = self._add(state, day_key, day, obs)
        anomaly = self._judge(obs, "spend_spike", "team", obs.team, record, entry, day,
                              team_first, None)
        if anomaly is not None:
            found.append(anomaly)
        state[day_key] = record
        return found

    def _add(self, state: State, key: str, day: int,
             obs: Observation) -> tuple[list[list[Any]], list[Any]]:
        return record_with_call(state.get(key), day, obs.cost_usd,
                                self._thresholds_for(obs.team).baseline_days)

    def _judge(self, obs: Observation, kind: SpikeKind, entity_kind: EntityKind, entity: str,
               record: list[list[Any]], entry: list[Any], day: int, first_day: int,
               hour: int | None) -> Anomaly | None:
        bit = _BITS[kind]
        if int(entry[3]) & bit:
            return None
        th = self._thresholds_for(obs.team)
        if kind == "request_spike":
            floor, unit = float(th.min_hourly_requests), "requests"
        elif hour is None:
            floor, unit = th.min_daily_team_spend_usd, "usd"
        else:
            floor, unit = th.min_hourly_spend_usd, "usd"
        observed = float(entry[_COLUMNS[kind]])
        if observed <= floor:  # the threshold is never below the floor: skip the statistics
            return None
        samples = baseline_samples(record, day, first_day, days=th.baseline_days,
                                   min_days=th.min_baseline_days, column=_COLUMNS[kind])
        if samples is None:
            return None
        verdict = robust(samples, ratio=th.spike_ratio, mad_k=th.spike_mad_k, floor=floor)
        if observed <= verdict.threshold:
            return None
        entry[3] = int(entry[3]) | bit
        zone = self._zone_for(obs.team)
        start, end = day_start_utc(day, zone, hour)
        span = "day" if hour is None else "hour"
        usual = f"${verdict.median:,.2f}" if unit == "usd" else f"{verdict.median:,.0f}"
        local = start.astimezone(zone)
        summary = (f"{entity_kind} {entity} ({obs.team}): {amount(observed, unit)} in the "
                   f"{span} from {local:%a %d %b %H:%M} {zone.key}, usually {usual}")
        return Anomaly.build(
            kind=kind, severity="critical" if observed >= 2 * verdict.threshold else "warning",
            team=obs.team, entity_kind=entity_kind, entity=entity, unit=unit,
            observed=round(observed, 6), expected=round(verdict.median, 6),
            threshold=round(verdict.threshold, 6), window_start=start, window_end=end,
            detected_at=obs.at, summary=summary,
            evidence={"span": span, "baseline_days": verdict.samples,
                      "mad": round(verdict.mad, 6), "user": obs.user, "key_id": obs.key_id,
                      "model": obs.model, "tool": obs.tool, "request_id": obs.request_id})


def amount(value: float, unit: str) -> str:
    """A rate as findings' summaries show it: ``$1,234.56`` or ``1,234 requests``."""
    return f"${value:,.2f}" if unit == "usd" else f"{value:,.0f} requests"


def _first_day(state: State, key: str, day: int) -> int:
    """The entity's first local day, recorded on first sight (and moved back by late events)."""
    known = state.get(key)
    if known is None or int(known) > day:
        state[key] = day
        return day
    return int(known)
