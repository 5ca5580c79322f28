"""Anomaly notifications: each finding to its team's Slack and the operator channel.

``AnomalyNotifier.notify`` is called by the anomalies sink with every batch it
stored (``sinks.AnomalySink(on_stored=...)``), in the store process. For each
finding and channel (the team's webhook, ``teams[].slack_webhook``; the
operator's, ``anomalies.operator_slack_webhook``) it takes one decision and
records it in the ``anomaly_notifications`` ledger:

1. already decided for this (anomaly id, channel): nothing (dedup: a replayed
   or re-detected finding is never sent twice);
2. no webhook for the channel: ``no_destination``;
3. older than ``notify_max_age_h`` (event time vs now): ``stale``, so
   replaying last month does not page anyone;
4. a finding of the same team, kind and entity was ``sent`` on the channel
   within ``cooldown_h`` of this one's window (event time, either side, so
   out-of-order findings behave the same): ``suppressed``;
5. else post it (``reports.slack_webhook``, bounded retries) and record
   ``sent``, or ``failed`` if Slack would not take it.

Guarantee: at most one message per (finding, channel) while the ledger
holds; one duplicate is possible if the process dies after Slack accepted a
message and before ``sent`` was recorded (webhooks have no idempotency key;
we prefer that to a lost alert, as the budget alerts do). Ledger reads and
writes raise ``sinks.StoreUnavailable``, which the sink retries.
"""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from meterline.schemas import Anomaly, Settings
from meterline.schemas.anomaly import CEILING_KINDS
from meterline.sinks.errors import store_errors

from .errors import DeliveryFailed
from .slack_webhook import SlackWebhook

log = logging.getLogger(__name__)

Post = Callable[[str, str, list[dict[str, Any]], str], None]
_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}


def _amount(value: float, unit: str) -> str:
    if unit == "usd":
        return f"${value:,.2f}"
    if unit in ("share", "error_rate"):
        return f"{value:.0%}"
    return f"{value:,.1f} {unit}" if unit == "days" else f"{value:,.0f} {unit}"


def _measures(anomaly: Anomaly) -> list[str]:
    """Observed against expected and threshold; against the ceiling alone for a ceiling."""
    observed = f"*Observed*\n{_amount(anomaly.observed, anomaly.unit)}"
    if anomaly.kind in CEILING_KINDS:  # an absolute limit, no baseline: nothing is expected
        return [observed, f"*Ceiling*\n{_amount(anomaly.threshold, anomaly.unit)} an hour"]
    return [observed, f"*Expected*\n{_amount(anomaly.expected, anomaly.unit)}",
            f"*Threshold*\n{_amount(anomaly.threshold, anomaly.unit)}"]


def render(anomaly: Anomaly, zone: ZoneInfo) -> tuple[str, list[dict[str, Any]]]:
    """(notification text, Block Kit blocks) for one finding. Pure."""
    start = anomaly.window_start.astimezone(zone)
    end = anomaly.window_end.astimezone(zone)
    title = f"Anomaly: {anomaly.kind.replace('_', ' ')} - {anomaly.entity_kind} {anomaly.entity}"
    fields = [f"*Team*\n{anomaly.team or '(all teams)'}", f"*Severity*\n{anomaly.severity}",
              *_measures(anomaly),
              f"*Window*\n{start:%a %d %b %H:%M} - {end:%a %d %b %H:%M} ({zone.key})"]
    command = shlex.join(["meterline", "sql", f"--param=id={anomaly.anomaly_id}",
                          "SELECT * FROM anomalies WHERE anomaly_id = {id:String}"])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn",
                                      "text": f"{_EMOJI[anomaly.severity]} {anomaly.summary}"[:3000]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"Dig in: `{command}` · Meterline anomaly {anomaly.anomaly_id}, "
            "notified once; repeats of this kind for this entity are held back during the "
            "cooldown.")[:3000]}]},
    ]
    return f"{anomaly.severity.upper()}: {anomaly.summary}", blocks


class AnomalyNotifier:
    """Decides, sends and records notifications for stored findings. One per store process."""

    def __init__(self, client: Any, database: str, settings: Settings, *,
                 post: Post | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self._table = f"{database}.anomaly_notifications"
        self._anomalies = settings.anomalies
        self._zone = ZoneInfo(settings.timezone)
        self._team_webhooks = {team.name: team.slack_webhook.get_secret_value()
                               for team in settings.teams if team.slack_webhook is not None}
        operator = settings.anomalies.operator_slack_webhook
        self._operator_webhook = operator.get_secret_value() if operator is not None else ""
        # fewer, shorter retries than budget alerts: the sink waits on every post
        self._delivery = settings.budgets.model_copy(update={"retry_attempts": 3,
                                                             "retry_max_s": 5.0})
        self._post = post or self._post_to_slack
        self._now = now
        self.sent = 0

    def _post_to_slack(self, url: str, text: str, blocks: list[dict[str, Any]], what: str) -> None:
        SlackWebhook(url, self._delivery).post(text, blocks, what=what)

    def notify(self, anomalies: Sequence[Anomaly]) -> None:
        """Decide each (finding, channel) not yet decided; see the module docstring."""
        decided = self._decided([a.anomaly_id for a in anomalies])
        rows: list[list[Any]] = []
        for anomaly in anomalies:
            for channel, url in (("team", self._team_webhooks.get(anomaly.team, "")),
                                 ("operator", self._operator_webhook)):
                if (anomaly.anomaly_id, channel) in decided:
                    continue
                decided.add((anomaly.anomaly_id, channel))
                state, detail = self._decide(anomaly, channel, url)
                rows.append(self._row(anomaly, channel, state, detail))
                if state in ("sent", "failed"):  # visible to the next cooldown check at once
                    self._record(rows)
                    rows = []
        self._record(rows)

    def _decide(self, anomaly: Anomaly, channel: str, url: str) -> tuple[str, str]:
        if not url:
            return "no_destination", ""
        age = self._now() - anomaly.detected_at
        if age > timedelta(hours=self._anomalies.notify_max_age_h):
            return "stale", f"{age.total_seconds() / 3600:.1f} h old"
        if self._cooling_down(anomaly, channel):
            return "suppressed", f"cooldown {self._anomalies.cooldown_h:g} h"
        text, blocks = render(anomaly, self._zone)
        try:
            self._post(url, text, blocks, f"anomaly {anomaly.anomaly_id} to {channel}")
        except DeliveryFailed as exc:
            log.warning("anomaly %s not delivered to %s: %s", anomaly.anomaly_id, channel, exc)
            return "failed", str(exc)[:500]
        self.sent += 1
        return "sent", ""

    def _decided(self, anomaly_ids: list[str]) -> set[tuple[str, str]]:
        if not anomaly_ids:
            return set()
        with store_errors("reading the anomaly notification ledger"):
            result = self._client.query(
                f"SELECT anomaly_id, channel FROM {self._table} "
                "WHERE anomaly_id IN {ids:Array(String)} "
                "AND state != 'failed'", parameters={"ids": anomaly_ids})
        return {(row[0], row[1]) for row in result.result_rows}

    def _cooling_down(self, anomaly: Anomaly, channel: str) -> bool:
        cooldown_s = int(self._anomalies.cooldown_h * 3600)
        if cooldown_s <= 0:
            return False
        with store_errors("reading the anomaly notification ledger"):
            result = self._client.query(
                f"SELECT count() FROM {self._table} WHERE team = {{team:String}} "
                "AND kind = {kind:String} AND entity = {entity:String} "
                "AND channel = {channel:String} AND state = 'sent' "
                "AND abs(toInt64(toUnixTimestamp(window_start)) - {start:Int64}) < {cooldown:Int64}",
                parameters={"team": anomaly.team, "kind": anomaly.kind,
                            "entity": _entity(anomaly), "channel": channel,
                            "start": int(anomaly.window_start.timestamp()),
                            "cooldown": cooldown_s})
        return int(result.result_rows[0][0]) > 0

    def _row(self, anomaly: Anomaly, channel: str, state: str, detail: str) -> list[Any]:
        return [anomaly.anomaly_id, channel, anomaly.team, anomaly.kind, _entity(anomaly),
                anomaly.window_start, state, detail]

    def _record(self, rows: list[list[Any]]) -> None:
        if rows:
            with store_errors(f"recording {len(rows)} anomaly notifications"):
                self._client.insert(self._table, rows, column_names=[
                    "anomaly_id", "channel", "team", "kind", "entity", "window_start", "state",
                    "detail"])


def _entity(anomaly: Anomaly) -> str:
    return f"{anomaly.entity_kind}:{anomaly.entity}"


def run_anomaly_sink(settings: Settings, stop: threading.Event) -> None:
    """The store process's anomalies consumer with its notifier; blocks until ``stop``."""
    from meterline.sinks import connect
    from meterline.sinks.anomalies import AnomalySink, AnomalyWriter

    client = connect(settings.clickhouse)
    database = settings.clickhouse.database
    notifier = (AnomalyNotifier(client, database, settings)
                if settings.anomalies.enabled and settings.anomalies.notify else None)
    sink = AnomalySink(settings.kafka, settings.store, AnomalyWriter(client, database),
                       on_stored=notifier.notify if notifier is not None else None)
    sink.run(stop)
