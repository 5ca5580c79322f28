"""One user's share of the team's month-to-date spend.

The surprise when spend becomes visible is often one developer holding 40% of
a team's budget. ``ShareDetector.observe`` keeps the team's month-to-date
spend and each user's, and finds a user whose share passes ``budget_share``
once per user and month. Each call judges the team's top spender, so the
finding does not depend on the order calls are processed in. A share early
in the month is noise (one user's first morning is 100% of nothing), so it
is judged only after
``share_min_month_days`` and ``share_min_team_spend_usd``, and only in teams
with ``share_min_users`` active users.

Key layout: ``m|team|YYYY-MM`` → ``{"t": team spend, "u": {user: spend},
"x": [users already found]}``, the month in the team's time zone. One write
per call, of a value that grows with the team's active users (tens of
numbers); the month before last is deleted when a new month starts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from meterline.schemas import Anomaly

from .observation import Observation
from .state import State, ThresholdsFor, ZoneFor


def month_bounds(at: datetime, zone: ZoneInfo) -> tuple[str, datetime, datetime]:
    """(``YYYY-MM``, start, end) of the local calendar month holding ``at``; times in UTC."""
    local = at.astimezone(zone)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    utc = ZoneInfo("UTC")
    return f"{start:%Y-%m}", start.astimezone(utc), end.astimezone(utc)


def _previous(month: str, back: int) -> str:
    year, number = (int(part) for part in month.split("-"))
    index = year * 12 + number - 1 - back
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


class ShareDetector:
    """Finds users holding more than their team's allowed share of month-to-date spend."""

    def __init__(self, thresholds_for: ThresholdsFor, zone_for: ZoneFor) -> None:
        self._thresholds_for = thresholds_for
        self._zone_for = zone_for

    def observe(self, obs: Observation, state: State) -> list[Anomaly]:
        if obs.cost_usd <= 0:
            return []
        month, start, end = month_bounds(obs.at, self._zone_for(obs.team))
        key = f"m|{obs.team}|{month}"
        stored: dict[str, Any] = state.get(key) or {}
        if not stored:
            state.pop(f"m|{obs.team}|{_previous(month, 2)}", None)
        users = dict(stored.get("u", {}))
        users[obs.user] = float(users.get(obs.user, 0.0)) + obs.cost_usd
        total = float(stored.get("t", 0.0)) + obs.cost_usd
        found_users = list(stored.get("x", []))
        found: list[Anomaly] = []
        th = self._thresholds_for(obs.team)
        # Judge the team's top spender, not only the caller: whether the team total
        # crosses its floor on the heavy user's call or on a colleague's depends on
        # the order calls are processed in (a backlog after a restart is read
        # partition by partition), and the finding must not.
        user = max(users, key=users.__getitem__)
        share = users[user] / total
        elapsed_days = (obs.at - start).total_seconds() / 86400
        if (user not in found_users and share > th.budget_share
                and total >= th.share_min_team_spend_usd and len(users) >= th.share_min_users
                and elapsed_days >= th.share_min_month_days):
            found_users.append(user)
            found.append(Anomaly.build(
                kind="budget_share", severity="critical" if share >= 0.6 else "warning",
                team=obs.team, entity_kind="user", entity=user, unit="share",
                observed=round(share, 4), expected=round(1 / max(len(users), 1), 4),
                threshold=th.budget_share, window_start=start, window_end=end,
                detected_at=obs.at,
                summary=(f"user {user} holds {share:.0%} of team {obs.team}'s {month} spend "
                         f"so far (${users[user]:,.2f} of ${total:,.2f}); "
                         f"alert above {th.budget_share:.0%}"),
                evidence={"month": month, "user_usd": round(users[user], 6),
                          "team_usd": round(total, 6), "active_users": len(users)}))
        state[key] = {"t": total, "u": users, "x": found_users}
        return found
