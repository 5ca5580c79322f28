"""What the reconcile job finds, as stored in ``provider_reconciliation`` and read back.

A ``Finding`` is one compared (UTC day, provider, model), or one foreign key's
usage on a day and model (*unmetered*). A ``ReconcileRun`` is one run's
findings and the state of each upstream it read. ``fetch_provider_check``
reads the stored findings of a span of days back, as the chargeback's footer
and the dashboard show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from meterline.sinks.errors import store_errors

from .chargeback_query import exact
from .provider_reports import Tokens

TABLE = "provider_reconciliation"
SCALE = Decimal("1e-12")
COLUMNS = ["day", "provider", "model", "finding", "api_key_id", "scope", "run_id",
            "checked_at", "ledger_input_tokens", "ledger_cache_read_tokens",
            "ledger_cache_write_tokens", "ledger_output_tokens", "ledger_cost_usd",
            "provider_input_tokens", "provider_cache_read_tokens",
            "provider_cache_write_tokens", "provider_output_tokens", "provider_cost_usd",
            "difference_usd", "over_tolerance", "alerted"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One compared (day, provider, model), or one key's unmetered spend."""

    day: date
    provider: str
    model: str
    finding: str  # "ledger" | "unmetered"
    api_key_id: str
    scope: str
    ledger: Tokens
    ledger_cost_usd: Decimal
    reported: Tokens
    reported_cost_usd: Decimal
    over_tolerance: bool
    alerted: bool = False

    @property
    def difference_usd(self) -> Decimal:
        return self.reported_cost_usd - self.ledger_cost_usd

    def describe(self) -> str:
        if self.finding == "unmetered":
            tokens = self.reported
            all_input = tokens.input + tokens.cache_read + tokens.cache_write
            return (f"{self.day} {self.provider} {self.model}: ${self.reported_cost_usd:.2f} "
                    f"under key {self.api_key_id} ({self.scope}), which the gateway does not "
                    f"hold: spend that bypassed the gateway ({all_input:,} input tokens, "
                    f"{tokens.cache_read:,} of them cache reads, {tokens.output:,} output)")
        gap = self.reported - self.ledger
        return (f"{self.day} {self.provider} {self.model}: provider ${self.reported_cost_usd:.6f}"
                f", ledger ${self.ledger_cost_usd:.6f} (difference ${self.difference_usd:.6f});"
                f" tokens provider minus ledger: input {gap.input:+,}, cache read "
                f"{gap.cache_read:+,}, cache write {gap.cache_write:+,}, output {gap.output:+,}")

    def row(self, run_id: str, checked_at: datetime) -> list[Any]:
        return [self.day, self.provider, self.model, self.finding, self.api_key_id, self.scope,
                run_id, checked_at, self.ledger.input, self.ledger.cache_read,
                self.ledger.cache_write, self.ledger.output, _stored(self.ledger_cost_usd),
                self.reported.input, self.reported.cache_read, self.reported.cache_write,
                self.reported.output, _stored(self.reported_cost_usd),
                _stored(self.difference_usd), self.over_tolerance, self.alerted]


def _stored(amount: Decimal) -> Decimal:
    """At the column's scale (12 places): a split bill can carry more."""
    return amount.quantize(SCALE)


@dataclass(slots=True)
class ReconcileRun:
    """What one run found: per upstream "checked" or why not, and every finding."""

    run_id: str
    start: date
    end: date
    sources: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    alert_error: str = ""

    @property
    def differences(self) -> list[Finding]:
        return [f for f in self.findings if f.over_tolerance and f.finding == "ledger"]

    @property
    def unmetered(self) -> list[Finding]:
        return [f for f in self.findings if f.finding == "unmetered"]

    @property
    def failed(self) -> dict[str, str]:
        return {name: state for name, state in self.sources.items()
                if state.startswith("failed")}

    @property
    def matches(self) -> bool:
        """An upstream read, none failed, no difference past tolerance, no unmetered spend."""
        checked = any(state == "checked" for state in self.sources.values())
        return checked and not self.failed and not self.differences and not any(
            f.over_tolerance for f in self.unmetered)

    def unmetered_keys(self) -> list[dict[str, Any]]:
        """Per foreign key: its provider, scope, days seen and spend, largest first."""
        keys: dict[tuple[str, str, str], list[Finding]] = {}
        for finding in self.unmetered:
            keys.setdefault((finding.provider, finding.api_key_id, finding.scope),
                            []).append(finding)
        rows = [{"provider": provider, "api_key_id": key_id, "scope": scope,
                 "first_day": str(min(f.day for f in found)),
                 "last_day": str(max(f.day for f in found)),
                 "models": sorted({f.model for f in found}),
                 "cost_usd": str(sum((f.reported_cost_usd for f in found), Decimal(0)))}
                for (provider, key_id, scope), found in keys.items()]
        return sorted(rows, key=lambda row: -Decimal(row["cost_usd"]))

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "from": str(self.start), "to": str(self.end),
                "sources": self.sources, "failed": self.failed, "matches": self.matches,
                "compared": sum(f.finding == "ledger" for f in self.findings),
                "differences": [f.describe() for f in self.differences],
                "unmetered": [f.describe() for f in self.unmetered],
                "unmetered_usd": str(sum((f.reported_cost_usd for f in self.unmetered),
                                         Decimal(0))),
                "unmetered_keys": self.unmetered_keys(),
                "alert_error": self.alert_error}


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    """The provider check of a span of days, as the chargeback's footer and the dashboard show it."""

    days_checked: int
    compared: int
    ledger_cost_usd: Decimal
    provider_cost_usd: Decimal
    unmetered_usd: Decimal
    unmetered_keys: int
    last_checked_at: datetime | None
    #: Findings past tolerance, differences first, then the largest (ten at most).
    over_tolerance: list[str]
    over_tolerance_count: int
    #: Of those, the (day, model)s where the ledger and the gateway keys' report differ.
    differences: int


def fetch_provider_check(client: Any, database: str, first_day: date,
                         end_day: date) -> ProviderCheck:
    """The stored findings of the days ``first_day`` ≤ day < ``end_day`` (latest check each)."""
    table = f"{database}.{TABLE}"
    span = "day >= {start:Date} AND day < {end:Date}"
    bounds = {"start": str(first_day), "end": str(end_day)}
    totals_sql = f"""
        SELECT uniqExact(day), countIf(finding = 'ledger'),
               sumIf(ledger_cost_usd, finding = 'ledger'),
               sumIf(provider_cost_usd, finding = 'ledger'),
               sumIf(provider_cost_usd, finding = 'unmetered'),
               uniqExactIf(api_key_id, finding = 'unmetered'), max(checked_at),
               countIf(over_tolerance), countIf(over_tolerance AND finding = 'ledger')
        FROM {table} FINAL WHERE {span}"""
    worst_sql = f"""
        SELECT day, provider, model, finding, api_key_id, scope, ledger_input_tokens,
               ledger_cache_read_tokens, ledger_cache_write_tokens, ledger_output_tokens,
               ledger_cost_usd, provider_input_tokens, provider_cache_read_tokens,
               provider_cache_write_tokens, provider_output_tokens, provider_cost_usd
        FROM {table} FINAL WHERE {span} AND over_tolerance
        ORDER BY finding = 'ledger' DESC, abs(difference_usd) DESC, day, provider, model
        LIMIT 10"""
    with store_errors("reading the provider reconciliation"):
        totals = client.query(totals_sql, parameters=bounds).result_rows[0]
        worst = client.query(worst_sql, parameters=bounds).result_rows
    lines = [Finding(r[0], r[1], r[2], r[3], r[4], r[5], Tokens(*map(int, r[6:10])),
                     exact(r[10]), Tokens(*map(int, r[11:15])), exact(r[15]), True).describe()
             for r in worst]
    checked = int(totals[0])
    return ProviderCheck(checked, int(totals[1]), exact(totals[2]), exact(totals[3]),
                         exact(totals[4]), int(totals[5]), totals[6] if checked else None,
                         lines, int(totals[7]), int(totals[8]))
