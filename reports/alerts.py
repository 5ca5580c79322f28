"""Budget alerts: the check APScheduler runs every few minutes, and on demand.

``BudgetAlerts.check(now)`` is one pass over every configured budget:

1. For each budget, cut its current period in its time zone and read the
   period-to-date spend from ``spend_hourly`` (one query per distinct period).
2. Assess it (``budget_rules.assess``): thresholds crossed, and a forecast
   warning when the projection reaches the budget before the period ends.
3. Drop alerts the ledger already has as done. Of what remains, the most
   severe is the one to send; the rest are *superseded* by it (crossing 80%
   and 100% in one step sends one message, not two).
4. Claim it in the ledger (``alerts_ledger``: at most one sender per alert),
   post it to the team's webhook with retries, record ``sent``, or on failure
   ``failed``, which leaves it for the next check.
   A team without a usable webhook (``alerts_config``) gets no claim: the
   alert is recorded once as ``undelivered`` with the reason, and is sent by
   the first check after a webhook is configured.

A failure to deliver one alert does not stop the others. ClickHouse being
unavailable (``sinks.StoreUnavailable``) ends the pass; the scheduled job logs
it and the next interval retries, which is safe because every step re-reads.

Checks in one process are serialised by a process-wide lock: with embedded
ClickHouse all schedulers live in the store process, so two scheduler
instances there cannot even race to claim. Across processes (ClickHouse
server) the ledger's claim protocol is what keeps alerts single.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from meterline.schemas import Settings
from meterline.sinks import SinkError
from meterline.sinks.key_events import registry_states

from .alerts_config import alert_destinations
from .alerts_ledger import AlertLedger, AlertRef
from .alerts_message import AlertMessage, render
from .budget_period import BudgetPeriod
from .budget_rules import Assessment, Budget, Spend, assess, budgets_from, recent_window_start
from .budget_spend import SpendWindow, dig_in_sql, read_drivers, read_spend
from .errors import DeliveryFailed
from .slack_webhook import SlackWebhook

log = logging.getLogger(__name__)

#: Why a lock at module level: chdb lets one process own the data, so every
#: scheduler that can reach it lives in this process; one lock serialises them all.
_CHECK_LOCK = threading.Lock()

OutcomeStatus = Literal["sent", "failed", "would_send", "in_flight", "taken", "no_destination"]


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    """What a check did (or, in a dry run, would do) about one alert."""

    ref: AlertRef
    status: OutcomeStatus
    assessment: Assessment
    message: AlertMessage
    superseded: tuple[str, ...] = ()
    attempts: int = 0
    error: str = ""


class BudgetAlerts:
    """Budget alerts over one ClickHouse database. Construct once; ``check`` from any thread.

    The constructor resolves every destination; with ``budgets.require_webhooks``
    a missing or bad webhook fails start-up (``AlertConfigError``) rather than a send.
    """

    def __init__(self, client: Any, database: str, settings: Settings, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._client = client
        self._database = database
        self._settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        destinations = alert_destinations(settings)
        self._webhooks = {team: SlackWebhook(url, settings.budgets)
                          for team, url in destinations.urls.items()}
        self._undeliverable = destinations.undeliverable
        self._ledger = AlertLedger(client, database, settle_s=settings.budgets.claim_settle_s,
                                   timeout_s=settings.budgets.claim_timeout_s)
        self.budgets = budgets_from(settings)

    def check(self, now: datetime | None = None, *, dry_run: bool = False) -> list[AlertOutcome]:
        """One pass over every budget at ``now`` (default: the clock). See the module docstring.

        A dry run reads only: it claims nothing and sends nothing, and reports
        ``would_send`` for each alert a real check would try to send now.
        """
        now = now or self._clock()
        if dry_run:
            return self._check(now, dry_run=True)
        with _CHECK_LOCK:
            return self._check(now, dry_run=False)

    def run_scheduled(self) -> None:
        """The APScheduler job: a check, with store outages logged and left to the next run."""
        try:
            outcomes = self.check()
        except SinkError as exc:
            log.warning("budget alert check skipped, will retry next interval: %s", exc)
            return
        for outcome in outcomes:
            if outcome.status in ("sent", "failed"):
                log.info("budget alert %s: %s", outcome.ref.key, outcome.status)

    def _check(self, now: datetime, *, dry_run: bool) -> list[AlertOutcome]:
        outcomes: list[AlertOutcome] = []
        for assessment in self._assess_all(now):
            outcome = self._handle(assessment, dry_run=dry_run)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _current_budgets(self) -> list[Budget]:
        """The configured budgets, and those of keys minted since in the key registry."""
        registry = registry_states(self._client, self._database)
        if not any(key.budget_usd is not None for key in registry):
            return self.budgets
        return budgets_from(self._settings, registry)

    def _assess_all(self, now: datetime) -> list[Assessment]:
        """Every budget assessed at ``now``, reading spend once per distinct period."""
        window_h = self._settings.budgets.forecast_window_h
        groups: dict[tuple[datetime, datetime], list[tuple[Budget, BudgetPeriod]]] = {}
        for budget in self._current_budgets():
            period = budget.period(now)
            groups.setdefault((period.start, period.end), []).append((budget, period))
        assessments = []
        for members in groups.values():
            period = members[0][1]
            window = SpendWindow.of(period, now, recent_window_start(period, now, window_h))
            spend = read_spend(self._client, self._database, window,
                               {budget.scope for budget, _ in members})
            for budget, budget_period in members:
                figures = spend.get((budget.scope, budget.subject), Spend(recent_h=window.recent_h))
                assessments.append(assess(budget, budget_period, figures, now,
                                          self._settings.budgets))
        return assessments

    def _handle(self, assessment: Assessment, *, dry_run: bool) -> AlertOutcome | None:
        budget, period = assessment.budget, assessment.period
        refs = [AlertRef(budget.scope, budget.subject, budget.team.name, period.key, alert)
                for alert in assessment.due]
        if not refs:
            return None
        statuses = self._ledger.status([ref.key for ref in refs])
        pending = [ref for ref in refs if not statuses[ref.key].done]
        if not pending:
            return None
        primary, rest = pending[0], tuple(pending[1:])
        message = self._message(assessment, primary.alert)
        superseded = tuple(ref.alert for ref in rest)

        def outcome(status: OutcomeStatus, attempts: int = 0, error: str = "") -> AlertOutcome:
            return AlertOutcome(primary, status, assessment, message, superseded, attempts, error)

        webhook = self._webhooks.get(budget.team.name)
        if webhook is None:
            reason = self._undeliverable.get(budget.team.name, "no webhook")
            if not dry_run and not statuses[primary.key].undelivered:
                self._ledger.record_undelivered(primary, assessment.spend.period_usd,
                                                budget.budget_usd, reason)
                log.warning("budget alert %s not delivered: %s", primary.key, reason)
            return outcome("no_destination", error=reason)
        if dry_run:
            return outcome("would_send")
        if statuses[primary.key].live_claims:
            return outcome("in_flight")
        claim = self._ledger.claim(primary, assessment.spend.period_usd, budget.budget_usd, rest)
        if claim is None:
            return outcome("taken")
        try:
            attempts = webhook.post(message.text, message.blocks, what=f"budget alert {primary.key}")
        except DeliveryFailed as exc:
            log.error("budget alert %s not delivered; the next check retries it: %s",
                      primary.key, exc)
            self._ledger.record_failed(claim, str(exc))
            return outcome("failed", error=str(exc))
        self._ledger.record_sent(claim)
        log.info("budget alert %s sent to team %s in %d attempt(s)", primary.key,
                 budget.team.name, attempts)
        return outcome("sent", attempts)

    def _message(self, assessment: Assessment, alert: str) -> AlertMessage:
        budget, period = assessment.budget, assessment.period
        window = SpendWindow.of(period, assessment.now, assessment.now)
        drivers = read_drivers(self._client, self._database, window, budget.scope, budget.subject)
        template = self._settings.budgets.link_template
        link = template.format(team=budget.team.name, period=period.key) if template else ""
        return render(assessment, alert, drivers,
                      dig_in_sql=dig_in_sql(budget.scope, budget.subject, window), link=link)
