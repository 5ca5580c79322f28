"""Things new to a team: a key back after a long silence, a first-seen model or
tool, a model without a price.

``NoveltyDetector.observe`` judges each call against what the team has seen.
Key layout (all under the team):

- ``t|team`` → ``{"first": epoch s, "models": [...], "tools": [...],
  "unpriced": {model: "YYYY-MM"}}``: written only when something in it
  changes (a new model, tool, or an unpriced month), not per call;
- ``k|team|key`` → the key's last call (epoch s), written at most once a
  minute per key (a silence is days, a minute is well below its resolution).

First-seen models and tools are found only after the team's
``learning_days``: everything in a team's first week is its starting set.
An unpriced model is found once per team, model and local month, so an
unpriced model in use keeps being reported monthly until it is priced.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from meterline.schemas import Anomaly

from .observation import Observation
from .share import month_bounds
from .state import State, ThresholdsFor, ZoneFor

KEY_WRITE_EVERY_S = 60.0


class NoveltyDetector:
    """Finds dormant keys, first-seen models and tools, and unpriced models, per team."""

    def __init__(self, thresholds_for: ThresholdsFor, zone_for: ZoneFor) -> None:
        self._thresholds_for = thresholds_for
        self._zone_for = zone_for

    def observe(self, obs: Observation, state: State) -> list[Anomaly]:
        th = self._thresholds_for(obs.team)
        found: list[Anomaly] = []
        dormant = self._dormant_key(obs, state, th.dormant_after_days)
        if dormant is not None:
            found.append(dormant)
        team_key = f"t|{obs.team}"
        stored: dict[str, Any] = state.get(team_key) or {}
        now_s = obs.at.timestamp()
        first_s = min(float(stored.get("first", now_s)), now_s)
        learning = now_s - first_s < th.learning_days * 86400
        models, tools = list(stored.get("models", [])), list(stored.get("tools", []))
        unpriced = dict(stored.get("unpriced", {}))
        hour = obs.at.replace(minute=0, second=0, microsecond=0)
        if obs.model not in models:
            models.append(obs.model)
            if not learning:
                found.append(self._first_seen(obs, "new_model", "model", obs.model, hour))
        if obs.tool not in tools:
            tools.append(obs.tool)
            if not learning:
                found.append(self._first_seen(obs, "new_tool", "tool", obs.tool, hour))
        if obs.unpriced:
            month, start, end = month_bounds(obs.at, self._zone_for(obs.team))
            if unpriced.get(obs.model) != month:
                unpriced[obs.model] = month
                found.append(Anomaly.build(
                    kind="unpriced_model", severity="warning", team=obs.team,
                    entity_kind="model", entity=obs.model, unit="calls", observed=1.0,
                    expected=0.0, threshold=0.0, window_start=start, window_end=end,
                    detected_at=obs.at,
                    summary=(f"model {obs.model} ({obs.provider}) has no price: team "
                             f"{obs.team}'s calls to it are unpriced until a price override "
                             "is added"),
                    evidence={"provider": obs.provider, "month": month, "user": obs.user,
                              "key_id": obs.key_id, "request_id": obs.request_id}))
        updated = {"first": first_s, "models": models, "tools": tools, "unpriced": unpriced}
        if updated != stored:
            state[team_key] = updated
        return found

    def _dormant_key(self, obs: Observation, state: State, after_days: float) -> Anomaly | None:
        key = f"k|{obs.team}|{obs.key_id}"
        last = state.get(key)
        now_s = obs.at.timestamp()
        if last is None or now_s - float(last) >= KEY_WRITE_EVERY_S:
            state[key] = max(now_s, float(last or 0.0))
        if last is None or now_s - float(last) < after_days * 86400:
            return None
        silent_days = (now_s - float(last)) / 86400
        last_at = datetime.fromtimestamp(float(last), tz=UTC)
        return Anomaly.build(
            kind="dormant_key", severity="warning", team=obs.team, entity_kind="key",
            entity=obs.key_id, unit="days", observed=round(silent_days, 3), expected=0.0,
            threshold=after_days, window_start=last_at, window_end=obs.at, detected_at=obs.at,
            summary=(f"key {obs.key_id} of {obs.user} ({obs.team}) is calling again after "
                     f"{silent_days:.0f} days of silence"),
            evidence={"user": obs.user, "model": obs.model, "tool": obs.tool,
                      "request_id": obs.request_id})

    def _first_seen(self, obs: Observation, kind: Literal["new_model", "new_tool"],
                    entity_kind: Literal["model", "tool"], entity: str,
                    hour: datetime) -> Anomaly:
        return Anomaly.build(
            kind=kind, severity="info", team=obs.team, entity_kind=entity_kind, entity=entity,
            unit="calls", observed=1.0, expected=0.0, threshold=0.0, window_start=hour,
            window_end=hour + timedelta(hours=1), detected_at=obs.at,
            summary=f"team {obs.team} used {entity_kind} {entity} for the first time "
                    f"({obs.user}, {obs.tool if entity_kind == 'model' else obs.model})",
            evidence={"user": obs.user, "key_id": obs.key_id, "provider": obs.provider,
                      "request_id": obs.request_id})
