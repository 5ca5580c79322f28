"""The Block Kit message a team lead receives for one budget alert.

``render`` is pure: the same assessment gives the same message, so the dry run
(``meterline alerts check --dry-run``) prints exactly what would be sent. The
message answers, in order: whose budget, how bad (spend vs budget, % used),
where it is heading (projection), who and what drives it (top users, models,
repos), and how to dig in (a dashboard link if configured, else a query for
``meterline sql``). ``text`` is the fallback Slack shows in notifications.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from .budget_rules import FORECAST, Assessment
from .budget_spend import Driver


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """What goes to Slack: notification text and Block Kit blocks."""

    text: str
    blocks: list[dict[str, Any]]

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def usd(amount: Decimal) -> str:
    """``$1,234.57``: cents, rounded half up."""
    return f"${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def percent(fraction: Decimal) -> str:
    return f"{(fraction * 100).quantize(Decimal('1'), rounding=ROUND_HALF_UP)}%"


def _headline(assessment: Assessment, alert: str) -> tuple[str, str]:
    """(emoji-free title, notification sentence) for the alert."""
    who = assessment.budget.describe()
    used = percent(assessment.used)
    if alert == FORECAST:
        return (f"Budget forecast: {who} on pace to exceed",
                f"{who.capitalize()} is on pace to exceed its {assessment.period.label()} budget "
                f"({used} used so far)")
    if assessment.spend.period_usd >= assessment.budget.budget_usd:
        return (f"Budget reached: {who} at {used}",
                f"{who.capitalize()} has used {used} of its {assessment.period.label()} budget")
    return (f"Budget alert: {who} passed {alert}",
            f"{who.capitalize()} has used {used} of its {assessment.period.label()} budget")


def _projection(assessment: Assessment) -> str:
    if assessment.projected_usd is None:
        return "not enough data yet"
    line = f"{usd(assessment.projected_usd)} by period end"
    if assessment.crosses_at is not None:
        local = assessment.crosses_at.astimezone(ZoneInfo(assessment.period.timezone))
        line += f"\nbudget reached around {local:%a %d %b %H:%M} ({assessment.period.timezone})"
    return line


def _drivers(drivers: list[Driver]) -> str:
    titles = {"user": "Users", "model": "Models", "repo": "Repos"}
    lines = []
    for dimension, title in titles.items():
        top = [f"{d.name or '(none)'} {usd(d.cost_usd)}" for d in drivers if d.dimension == dimension]
        if top:
            lines.append(f"*{title}:* " + ", ".join(top))
    return "\n".join(lines) or "no priced spend yet"


def render(assessment: Assessment, alert: str, drivers: list[Driver], *, dig_in_sql: str,
           link: str = "") -> AlertMessage:
    """The message for ``alert`` (``80%``, ``100%``, ``forecast``) of one assessed budget."""
    budget, period = assessment.budget, assessment.period
    title, text = _headline(assessment, alert)
    fields = [
        f"*Team*\n{budget.team.name}",
        f"*Period*\n{period.label()} ({period.timezone})",
        f"*Spend vs budget*\n{usd(assessment.spend.period_usd)} of {usd(budget.budget_usd)}",
        f"*Used*\n{percent(assessment.used)}",
        f"*Projection*\n{_projection(assessment)}",
    ]
    if budget.scope != "team":
        fields.insert(1, f"*{budget.scope.capitalize()}*\n{budget.subject}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": field} for field in fields]},
        {"type": "section", "text": {"type": "mrkdwn",
                                      "text": "*Driving it*\n" + _drivers(drivers)}},
    ]
    if assessment.spend.unpriced_requests:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f":warning: {assessment.spend.unpriced_requests} unpriced requests are not in "
            "this spend; add a price override to count them.")}]})
    dig_in = f"Dig in: `{dig_in_sql}`"
    if link:
        dig_in = f"<{link}|Open the spend breakdown> · {dig_in}"
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": dig_in[:3000]}})
    lead = f" · lead {budget.team.lead}" if budget.team.lead else ""
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"Meterline budget alert `{alert}` for {budget.describe()}, period {period.key}{lead}. "
        "Sent once per period.")}]})
    return AlertMessage(text=text, blocks=blocks)
