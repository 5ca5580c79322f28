"""Start-up checks for budget alerts: where each team's alerts go, or why they cannot.

``alert_destinations(settings)`` runs when the scheduler registers the alert
job and when ``meterline alerts check`` starts. It looks at every team with a
budget (its own, a user's or a key's) and finds one of three answers:

- a usable webhook URL: alerts are posted there;
- no webhook: the team names ``slack_webhook_env`` but that variable is unset
  or empty (the usual case on a machine trying the project), or it names none;
- an unusable webhook: the URL is not an absolute http(s) URL, or looks like
  Slack's host but is not an incoming-webhook path.

What happens to the last two depends on ``budgets.require_webhooks``:

- off (the default): every other part runs. The team is logged once at
  start-up as "not delivered", and each alert that comes due is recorded in
  the ledger as ``undelivered`` with the reason (``alerts check`` prints it,
  the dashboard shows it). Setting the variable and restarting the store
  delivers what is still due.
- on (production): every named but missing or unusable webhook is gathered
  into one ``AlertConfigError``, so an operator fixes them in one pass, and
  start-up stops before any thread runs, instead of an alert failing at send
  time weeks later.

A team that names no webhook at all is never a start-up error: its budget may
exist only for the chargeback. Messages name the variable, never its value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from meterline.schemas import Settings, TeamSettings, webhook_url_problem

from .budget_rules import budgets_from
from .errors import AlertConfigError

log = logging.getLogger(__name__)

__all__ = ["AlertDestinations", "alert_destinations"]


@dataclass(frozen=True, slots=True)
class AlertDestinations:
    """Where each budgeted team's alerts go, and why the others' are not delivered."""

    #: team → webhook URL.
    urls: dict[str, str] = field(default_factory=dict)
    #: team → the reason its alerts are not delivered ("no webhook: ...").
    undeliverable: dict[str, str] = field(default_factory=dict)


def _problem(where: str, team: TeamSettings) -> tuple[str, str] | None:
    """``(reason recorded with the alert, start-up message)`` when the team has no usable URL."""
    if team.slack_webhook is None:
        if team.slack_webhook_env:
            return (f"no webhook: ${team.slack_webhook_env} is not set",
                    f"{where}: slack_webhook_env names ${team.slack_webhook_env}, which is not "
                    "set in the environment; export the team's Slack incoming-webhook URL there")
        return ("no webhook: the team names no slack_webhook_env",
                f"{where}: has a budget but no slack_webhook_env")
    problem = webhook_url_problem(team.slack_webhook.get_secret_value().strip())
    if problem:
        source = f"${team.slack_webhook_env}" if team.slack_webhook_env else "slack_webhook"
        return (f"webhook unusable: the URL in {source} {problem}",
                f"{where}: the Slack webhook URL in {source} {problem}")
    return None


def alert_destinations(settings: Settings) -> AlertDestinations:
    """The destinations of every team that has a budget.

    Raises ``AlertConfigError`` listing every unusable destination when
    ``budgets.require_webhooks`` is on; otherwise logs each one once.
    """
    problems: list[str] = []
    destinations = AlertDestinations()
    budgeted = {budget.team.name for budget in budgets_from(settings)}
    for index, team in enumerate(settings.teams):
        if team.name not in budgeted:
            continue
        found = _problem(f"teams.{index} ({team.name})", team)
        if found is None:
            assert team.slack_webhook is not None
            destinations.urls[team.name] = team.slack_webhook.get_secret_value().strip()
            continue
        reason, message = found
        destinations.undeliverable[team.name] = reason
        if team.slack_webhook_env or team.slack_webhook is not None:
            problems.append(message)
        else:  # a budget kept only for the chargeback: never a start-up error
            log.warning("budget alerts not delivered: %s", message)
    if problems and settings.budgets.require_webhooks:
        raise AlertConfigError(problems)
    for problem in problems:
        log.warning("budget alerts not delivered: %s (set budgets.require_webhooks to make this "
                    "a start-up error)", problem)
    return destinations
