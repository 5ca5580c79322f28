"""The reconcile job: the ledger checked against the providers' own reports.

``ProviderReconciler.run(start, end)`` checks the UTC days ``start`` ≤ day <
``end``. The scheduler runs it daily (``reconcile.cron``) over the last
``reconcile.lookback_days`` days; ``meterline report reconcile`` and
``meterline simulate --report`` run it on demand, through the store. The steps:

1. **Sources.** Each configured OpenAI or Anthropic upstream with an admin key
   (``providers.<name>.admin_key_env``), or served by the simulated provider,
   is read once, however many gateway providers share it. Others are skipped,
   with the reason, and the run says so.
2. **Reports.** The provider's usage per (day, model, API key), its cost per
   (day, model), and its keys (``provider_reports``). A provider that cannot be
   read fails that provider only.
3. **Whose keys.** A key whose redacted hint matches a secret the gateway
   holds for that upstream is the gateway's. Usage under any other key
   bypassed the gateway: it becomes an *unmetered* finding per key. Costs are
   billed per project or workspace, not per key (``_split_costs``): a scope
   with only one side's keys is that side's cost exactly; only a scope mixing
   both has its foreign part estimated at list price.
4. **Compare.** Per (day, model), the gateway keys' tokens against the
   events ledger's (every event, ``count_tokens`` excepted: it is free), and
   the gateway's part of the provider's cost against the ledger's cost.
   A difference past ``tolerance_usd`` or ``tolerance_tokens`` is *over
   tolerance*.
5. **Store.** Every (day, model) compared and every unmetered key is written
   to ``provider_reconciliation``, replacing an earlier check of the day.
6. **Alert.** Findings over tolerance that were not alerted before go to
   finance's Slack channel (``reports.slack_webhook``) in one message. A
   finding that was alerted stays alerted when re-checked; one that could
   not be posted is tried again on the next run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from meterline.schemas import Settings
from meterline.sinks.errors import store_errors

from .chargeback_query import exact
from .errors import DeliveryFailed, ProviderReportUnavailable
from .provider_reports import ProviderReport, ReportedUsage, Tokens, fetch_report, hint_matches
from .reconcile_findings import COLUMNS, TABLE, Finding, ReconcileRun
from .slack_webhook import SlackWebhook

log = logging.getLogger(__name__)

#: Prices usage at list price: (provider kind, model, day, usage) → USD.
PriceFn = Callable[[str, str, date, ReportedUsage], Decimal]
REPORTED_KINDS = ("openai", "anthropic")


@dataclass(frozen=True, slots=True)
class Source:
    """One upstream whose reports are read: its kind, URL, admin key, and the gateway's keys."""

    kind: str
    base_url: str
    admin_key: str
    gateway_secrets: frozenset[str]
    providers: tuple[str, ...]


def report_sources(settings: Settings) -> tuple[list[Source], dict[str, str]]:
    """Step 1: the upstreams to read, and each gateway provider skipped with its reason."""
    grouped: dict[tuple[str, str], list[str]] = {}
    skipped: dict[str, str] = {}
    for name, provider in settings.providers.items():
        simulated = provider.api_key is None and bool(settings.demo_upstream)
        if provider.kind not in REPORTED_KINDS:
            skipped[name] = f"no usage report API for a {provider.kind} upstream"
        elif provider.admin_key is None and not simulated:
            skipped[name] = (f"no admin key: set providers.{name}.admin_key_env to the "
                             "variable that holds it")
        else:
            url = settings.demo_upstream.rstrip("/") if simulated else provider.base_url
            grouped.setdefault((provider.kind, url), []).append(name)
    sources = []
    for (kind, base_url), names in grouped.items():
        configured = [settings.providers[name] for name in names]
        admin = next((p.admin_key.get_secret_value() for p in configured if p.admin_key), "")
        secrets = frozenset(p.api_key.get_secret_value() if p.api_key else "" for p in configured)
        sources.append(Source(kind, base_url, admin, secrets, tuple(names)))
    return sources, skipped


LedgerUsage = dict[tuple[date, str, str], tuple[Tokens, Decimal]]


def ledger_usage(client: Any, database: str, kinds: Mapping[str, str], start: date,
                 end: date) -> LedgerUsage:
    """The events ledger per (UTC day, provider kind, served model): tokens and cost."""
    sql = f"""
        SELECT toDate(received_at, 'UTC') AS day, provider, served_model,
               sum(input_tokens), sum(cache_read_tokens),
               sum(cache_write_5m_tokens + cache_write_1h_tokens), sum(output_tokens),
               sum(cost_usd)
        FROM {database}.events FINAL
        WHERE received_at >= toDateTime64({{start:String}}, 6, 'UTC')
          AND received_at < toDateTime64({{end:String}}, 6, 'UTC')
          AND surface != 'anthropic.count_tokens'
        GROUP BY day, provider, served_model"""
    bounds = {"start": f"{start} 00:00:00", "end": f"{end} 00:00:00"}
    with store_errors("reading the ledger to reconcile"):
        rows = client.query(sql, parameters=bounds).result_rows
    usage: LedgerUsage = {}
    for day, provider, model, input_, read, write, output, cost in rows:
        kind = kinds.get(provider)
        if kind is None or not model:
            continue
        tokens, total = usage.get((day, kind, model), (Tokens(), Decimal(0)))
        usage[(day, kind, model)] = (tokens + Tokens(int(input_), int(read), int(write),
                                                     int(output)), total + exact(cost))
    return usage


def _split_costs(report: ProviderReport, ours: set[str], price: PriceFn
                 ) -> tuple[dict[tuple[date, str], Decimal], dict[int, Decimal]]:
    """Each billed (day, model, scope) cost, to the gateway or to the foreign usage in it.

    Cost reports are per project or workspace, not per key. A scope holding
    only the gateway's keys is the gateway's cost, exactly; one holding only
    foreign keys is theirs, exactly (split by list price when several). Only
    in a scope that mixes both is the foreign part estimated at list price and
    the rest is the gateway's. Answers the gateway's cost per (day, model) and
    each foreign usage row's cost (by its index in ``report.usage``).
    """
    ours_in: set[tuple[date, str, str]] = set()
    foreign: dict[tuple[date, str, str], list[int]] = {}
    for index, usage in enumerate(report.usage):
        slot = (usage.day, usage.model, usage.scope)
        if usage.api_key_id in ours:
            ours_in.add(slot)
        else:
            foreign.setdefault(slot, []).append(index)
    gateway: dict[tuple[date, str], Decimal] = {}
    foreign_cost: dict[int, Decimal] = {}
    for slot in set(report.costs) | set(foreign):
        billed = report.costs.get(slot)
        rows = foreign.get(slot, [])
        listed = {i: price(report.kind, report.usage[i].model, report.usage[i].day,
                           report.usage[i]) for i in rows}
        if billed is None or slot in ours_in or not rows:
            foreign_cost.update(listed)
            if billed is not None:
                day_model = (slot[0], slot[1])
                gateway[day_model] = (gateway.get(day_model, Decimal(0)) + billed
                                      - sum(listed.values(), Decimal(0)))
            continue
        total = sum(listed.values(), Decimal(0))
        for i in rows:  # the scope's bill belongs to its foreign keys alone
            foreign_cost[i] = billed * listed[i] / total if total else billed / len(rows)
    return gateway, foreign_cost


def compare(report: ProviderReport, ledger: LedgerUsage, secrets: frozenset[str],
            price: PriceFn, settings: Settings) -> list[Finding]:
    """Steps 3 and 4 for one provider's report."""
    tolerance = settings.reconcile
    ours = {key_id for key_id, hint in report.keys.items()
            if any(hint_matches(hint, secret) for secret in secrets)}
    gateway_cost, foreign_cost = _split_costs(report, ours, price)
    metered: dict[tuple[date, str], Tokens] = {}
    unmetered: dict[tuple[date, str, str, str], tuple[Tokens, Decimal]] = {}
    for index, usage in enumerate(report.usage):
        if usage.api_key_id in ours:
            key = (usage.day, usage.model)
            metered[key] = metered.get(key, Tokens()) + usage.tokens
            continue
        slot = (usage.day, usage.model, usage.api_key_id, usage.scope)
        tokens, total = unmetered.get(slot, (Tokens(), Decimal(0)))
        unmetered[slot] = (tokens + usage.tokens, total + foreign_cost[index])
    compared = {(day, model) for day, kind, model in ledger if kind == report.kind}
    findings = []
    for day, model in sorted(compared | set(metered) | set(gateway_cost)):
        ledger_tokens, ledger_cost = ledger.get((day, report.kind, model), (Tokens(), Decimal(0)))
        reported = metered.get((day, model), Tokens())
        reported_cost = gateway_cost.get((day, model), Decimal(0))
        over = (abs(reported_cost - ledger_cost) > tolerance.tolerance_usd
                or (reported - ledger_tokens).largest() > tolerance.tolerance_tokens)
        findings.append(Finding(day, report.kind, model, "ledger", "", "", ledger_tokens,
                                ledger_cost, reported, reported_cost, over))
    for (day, model, key_id, scope), (tokens, cost) in sorted(unmetered.items()):
        over = cost > tolerance.unmetered_tolerance_usd or (cost == 0 and tokens.largest() > 0)
        findings.append(Finding(day, report.kind, model, "unmetered", key_id, scope, Tokens(),
                                Decimal(0), tokens, cost, over))
    return findings


class ProviderReconciler:
    """Runs the reconcile job against one ClickHouse database (a writable client)."""

    def __init__(self, client: Any, database: str, settings: Settings, price: PriceFn, *,
                 fetch: Callable[..., ProviderReport] = fetch_report,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self._database = database
        self._settings = settings
        self._price = price
        self._fetch = fetch
        self._now = now

    def run(self, start: date, end: date, *, alert: bool = True) -> ReconcileRun:
        """Steps 1 to 6 for the UTC days ``start`` ≤ day < ``end``."""
        if end <= start:
            raise ValueError(f"'to' ({end}) must be after 'from' ({start})")
        run = ReconcileRun(uuid.uuid4().hex[:16], start, end)
        sources, skipped = report_sources(self._settings)
        run.sources.update({name: f"skipped: {why}" for name, why in skipped.items()})
        kinds = {name: p.kind for name, p in self._settings.providers.items()}
        ledger = ledger_usage(self._client, self._database, kinds, start, end)
        for source in sources:
            label = "+".join(source.providers)
            try:
                report = self._fetch(source.kind, source.base_url, source.admin_key, start, end,
                                     timeout_s=self._settings.reconcile.timeout_s)
            except ProviderReportUnavailable as exc:
                log.error("reconcile: %s reports unavailable: %s", label, exc)
                run.sources[label] = f"failed: {exc}"
                continue
            run.findings += compare(report, ledger, source.gateway_secrets, self._price,
                                    self._settings)
            run.sources[label] = "checked"
        run.findings = self._carry_alerted(run.findings, start, end)
        if alert:
            run.findings, run.alert_error = self._alert(run)
        self._store(run)
        log.info("reconcile %s..%s: %d compared, %d differences, %d unmetered keys (run %s)",
                 start, end, len(run.findings) - len(run.unmetered), len(run.differences),
                 len(run.unmetered), run.run_id)
        return run

    def run_scheduled(self) -> None:
        """The daily job: the last ``lookback_days`` UTC days, ending yesterday."""
        today = self._now().astimezone(UTC).date()
        self.run(today - timedelta(days=self._settings.reconcile.lookback_days), today)

    def _carry_alerted(self, findings: list[Finding], start: date, end: date) -> list[Finding]:
        sql = f"""SELECT day, provider, model, finding, api_key_id FROM {self._database}.{TABLE}
                  FINAL WHERE alerted AND day >= {{start:Date}} AND day < {{end:Date}}"""
        with store_errors("reading earlier reconcile findings"):
            rows = self._client.query(sql, parameters={"start": str(start), "end": str(end)}
                                      ).result_rows
        done = {tuple(row) for row in rows}
        return [replace(f, alerted=True) if (f.day, f.provider, f.model, f.finding,
                                             f.api_key_id) in done else f for f in findings]

    def _alert(self, run: ReconcileRun) -> tuple[list[Finding], str]:
        due = [f for f in run.findings if f.over_tolerance and not f.alerted]
        webhook = self._settings.reports.slack_webhook
        if not due:
            return run.findings, ""
        if webhook is None:
            log.warning("reconcile: %d findings past tolerance, but reports.slack_webhook_env "
                        "is not set: not alerted", len(due))
            return run.findings, "reports.slack_webhook is not set"
        text, blocks = alert_message(due, run)
        try:
            SlackWebhook(webhook.get_secret_value(), self._settings.budgets).post(
                text, blocks, what=f"reconcile run {run.run_id}")
        except DeliveryFailed as exc:
            return run.findings, str(exc)
        # posted: every finding past tolerance is now alerted (``due`` was those not yet)
        return [replace(f, alerted=True) if f.over_tolerance else f for f in run.findings], ""

    def _store(self, run: ReconcileRun) -> None:
        if not run.findings:
            return
        checked_at = self._now()
        rows = [finding.row(run.run_id, checked_at) for finding in run.findings]
        with store_errors("storing reconcile findings"):
            self._client.insert(f"{self._database}.{TABLE}", rows, column_names=COLUMNS)


def alert_message(due: list[Finding], run: ReconcileRun) -> tuple[str, list[dict[str, Any]]]:
    """Finance's Slack message: the differences and the unmetered spend, ten lines at most."""
    differences = [f for f in due if f.finding == "ledger"]
    unmetered = [f for f in due if f.finding == "unmetered"]
    bypass = sum((f.reported_cost_usd for f in unmetered), Decimal(0))
    text = (f"Reconciliation {run.start}..{run.end - timedelta(days=1)}: "
            f"{len(differences)} differences between the ledger and the providers' reports, "
            f"${bypass:.2f} of spend under {len({f.api_key_id for f in unmetered})} keys the "
            "gateway does not hold")
    lines = [f"• {finding.describe()}" for finding in due[:10]]
    if len(due) > 10:
        lines.append(f"… and {len(due) - 10} more: provider_reconciliation, run {run.run_id}")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
              {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]
    return text, blocks
