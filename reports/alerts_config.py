"""Start-up checks for budget alerts: every destination usable before the first check.

``alert_destinations(settings)`` runs when the scheduler registers the alert
job and when ``meterline alerts check`` starts. It gathers *every* problem
into one ``AlertConfigError``, so an operator fixes them in one pass, and a
bad webhook is a start-up error instead of a failure at send time, weeks later,
when the budget is crossed:

- a team with a budget names ``slack_webhook_env`` but that variable is unset
  or empty (the missing secret);
- the webhook URL is not an absolute http(s) URL, or looks like Slack's host
  but is not an incoming-webhook path.

A team with a budget and no ``slack_webhook_env`` at all is not an error (the
budget may exist only for the chargeback report); its alerts are not sent, and
a warning at start-up says so. Messages name the variable, never its value.
"""

from __future__ import annotations

import logging

from meterline.schemas import Settings, webhook_url_problem

from .budget_rules import budgets_from
from .errors import AlertConfigError

log = logging.getLogger(__name__)


def alert_destinations(settings: Settings) -> dict[str, str]:
    """Webhook URL per team that has a budget (its own, a user's or a key's) and a webhook.

    Raises ``AlertConfigError`` listing every unusable destination.
    """
    problems: list[str] = []
    destinations: dict[str, str] = {}
    teams_with_budgets = {budget.team.name: budget.team for budget in budgets_from(settings)}
    for index, team in enumerate(settings.teams):
        if team.name not in teams_with_budgets:
            continue
        where = f"teams.{index} ({team.name})"
        if team.slack_webhook is None:
            if team.slack_webhook_env:
                problems.append(
                    f"{where}: slack_webhook_env names ${team.slack_webhook_env}, which is not set "
                    "in the environment; export the team's Slack incoming-webhook URL there")
            else:
                log.warning("%s has a budget but no slack_webhook_env: its budget alerts will "
                            "not be sent", where)
            continue
        url = team.slack_webhook.get_secret_value().strip()
        problem = webhook_url_problem(url)
        if problem:
            source = f"${team.slack_webhook_env}" if team.slack_webhook_env else "slack_webhook"
            problems.append(f"{where}: the Slack webhook URL in {source} {problem}")
            continue
        destinations[team.name] = url
    if problems:
        raise AlertConfigError(problems)
    return destinations
