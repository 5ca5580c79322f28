"""The enforcement ledger: rate limits and blocking budgets, held in one place for every gateway.

It runs in the store process, beside ClickHouse, and answers every gateway
instance on every host (through the store endpoint, ``ledger_wire``). One holder makes admission
race-free: two instances cannot both spend the last dollar, because both ask
here and the answers are given one at a time (``_lock``).

**Budgets** (mode ``block``). A call reserves its worst case before it goes
upstream: its input (estimated) plus the most it may write (``max_tokens``,
else ``governance.default_max_output_tokens``), priced by the same price
book that bills. It settles to its actual cost when it ends. A budget's spend
is what the ledger that bills says:

    spend = stored (the ``spend_hourly`` rollup, re-read every ``refresh_interval_s``)
          + every reservation whose event is not stored yet (settled: its cost;
            open: its worst case)

A reservation leaves the sum only when ``refresh`` has found its event in
``events``, and always before the totals are read, so the two never miss a
call between them (at worst a call is counted twice for one refresh: the safe
side). A call is admitted while spend is under the budget, so the overshoot is
at most one call's worst case over all instances together (docs/governance.md).

**Rate limits**: requests and tokens per rolling minute per key, user and team.
An admitted call counts one request at once and its estimated input tokens;
when it settles its tokens become the actual input plus output. A refusal says
when the window frees enough (``retry_after_s``).

No I/O under the lock; ClickHouse is read only by ``refresh``, on its thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from meterline.processors.price_book import PriceBook
from meterline.reports.budget_period import BudgetPeriod
from meterline.reports.budget_rules import Scope
from meterline.reports.budget_spend import SpendWindow, read_spend
from meterline.schemas import Settings, Usage
from meterline.sinks.errors import store_errors

from .ledger_wire import (
    ADMIT_PATH,
    Admission,
    BudgetAsk,
    Decision,
    LimitAsk,
    decode_admission,
    encode_decision,
)

log = logging.getLogger(__name__)

WINDOW_S = 60.0

BudgetKey = tuple[Scope, str, str]  # scope, subject, period key


@dataclass(slots=True)
class _Reservation:
    budgets: tuple[BudgetKey, ...]
    worst_usd: Decimal
    expires: float
    windows: list[list[float]] = field(default_factory=list)  # the [t, tokens] entries it holds
    cost_usd: Decimal | None = None  # set when settled

    @property
    def counted_usd(self) -> Decimal:
        return self.worst_usd if self.cost_usd is None else self.cost_usd


class Ledger:
    """Admits, settles and refreshes; thread-safe. ``client`` is a ClickHouse client."""

    def __init__(self, settings: Settings, client: Any, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings.governance
        self._client = client
        self._database = settings.clickhouse.database
        self._book = PriceBook(settings.prices,
                               {name: p.kind for name, p in settings.providers.items()})
        self._book_lock = threading.Lock()  # the price book caches: one caller at a time
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[Scope, str], deque[list[float]]] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._stored: dict[BudgetKey, Decimal] = {}
        self._pending: dict[BudgetKey, Decimal] = {}  # the sum of each budget's reservations
        self._periods: dict[BudgetKey, BudgetPeriod] = {}

    # -- admission ----------------------------------------------------------------------------

    def admit(self, ask: Admission) -> Decision:
        now = self._clock()
        worst = self._price(ask.provider, ask.model,
                            Usage(input_tokens=ask.input_tokens,
                                  output_tokens=ask.max_output_tokens, source="estimated"))
        budgets = [(budget, self._budget_key(budget)) for budget in ask.budgets]
        with self._lock:
            for limit in ask.limits:
                refused = self._over_limit(limit, now)
                if refused is not None:
                    return refused
            for budget, key in budgets:
                spent = self._spent(key)
                if spent >= budget.usd:
                    return Decision(False, "budget", budget.scope, budget.subject,
                                    f"The {budget.scope} {budget.subject!r} has spent "
                                    f"${spent:.2f} of its ${budget.usd:.2f} "
                                    f"{self._periods[key].label()} budget; calls are blocked "
                                    "until the next period or a raised budget.")
            reservation = _Reservation(tuple(key for _, key in budgets), worst,
                                       now + self._settings.reservation_ttl_s)
            for limit in ask.limits:
                entry = [now, float(ask.input_tokens)]
                self._windows.setdefault((limit.scope, limit.subject), deque()).append(entry)
                reservation.windows.append(entry)
            self._reservations[ask.request_id] = reservation
            self._count(reservation, worst)
        return Decision(True, reserved_usd=worst)

    def _count(self, reservation: _Reservation, delta: Decimal) -> None:
        for key in reservation.budgets:
            self._pending[key] = self._pending.get(key, Decimal(0)) + delta

    def _drop(self, request_id: str) -> None:
        reservation = self._reservations.pop(request_id, None)
        if reservation is not None:
            self._count(reservation, -reservation.counted_usd)

    def _over_limit(self, limit: LimitAsk, now: float) -> Decision | None:
        window = self._windows.get((limit.scope, limit.subject))
        if not window:
            return None
        while window and window[0][0] <= now - WINDOW_S:
            window.popleft()
        if limit.rpm and len(window) >= limit.rpm:
            wait = window[len(window) - limit.rpm][0] + WINDOW_S - now
            return self._rate_refusal(limit, f"{limit.rpm} requests per minute", wait, False)
        if limit.tpm:
            used = sum(entry[1] for entry in window)
            if used >= limit.tpm:
                freed, wait = 0.0, WINDOW_S
                for t, tokens in window:  # when enough tokens leave the window
                    freed += tokens
                    if used - freed < limit.tpm:
                        wait = t + WINDOW_S - now
                        break
                return self._rate_refusal(limit, f"{limit.tpm:,} tokens per minute", wait, True)
        return None

    @staticmethod
    def _rate_refusal(limit: LimitAsk, what: str, wait_s: float, tokens: bool) -> Decision:
        retry = max(1, math.ceil(wait_s))
        return Decision(False, "rate_limit", limit.scope, limit.subject,
                        f"Rate limit of {what} reached for {limit.scope} {limit.subject!r}. "
                        f"Please try again in {retry}s.", retry_after_s=retry, tokens=tokens)

    def _budget_key(self, budget: BudgetAsk) -> BudgetKey:
        period = BudgetPeriod.containing(datetime.now(UTC), budget.period, budget.timezone)
        key: BudgetKey = (budget.scope, budget.subject, period.key)
        self._periods.setdefault(key, period)
        return key

    def _spent(self, key: BudgetKey) -> Decimal:
        return self._stored.get(key, Decimal(0)) + self._pending.get(key, Decimal(0))

    def spent(self, scope: Scope, subject: str, period_key: str) -> Decimal:
        """What the ledger counts for one budget now (stored plus not yet stored)."""
        with self._lock:
            return self._spent((scope, subject, period_key))

    def _price(self, provider: str, model: str, usage: Usage) -> Decimal:
        with self._book_lock:
            quote = self._book.quote(provider, model, usage, datetime.now(UTC))
        if quote is None:
            log.warning("no price for %s/%s: its calls reserve nothing against budgets",
                        provider, model)
            return Decimal(0)
        return quote.cost_usd

    # -- settlement ---------------------------------------------------------------------------

    def settle(self, request_id: str, provider: str, model: str, usage: Usage) -> None:
        """The call ended: count its actual cost and tokens."""
        cost = self._price(provider, model, usage)
        tokens = float(usage.total_tokens)
        with self._lock:
            reservation = self._reservations.get(request_id)
            if reservation is None or reservation.cost_usd is not None:
                return
            for entry in reservation.windows:
                entry[1] = tokens
            if not reservation.budgets:  # only limits: nothing left to count against a budget
                del self._reservations[request_id]
                return
            self._count(reservation, cost - reservation.worst_usd)
            reservation.cost_usd = cost

    # -- refresh ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read stored spend, and drop the reservations whose events are stored."""
        now = self._clock()
        with self._lock:
            for request_id, reservation in list(self._reservations.items()):
                if reservation.expires <= now:
                    self._drop(request_id)
            for subject, entries in list(self._windows.items()):
                if not entries or entries[-1][0] <= now - WINDOW_S:  # quiet for a minute
                    del self._windows[subject]
            pending = [request_id for request_id, r in self._reservations.items() if r.budgets]
            periods = dict(self._periods)
        stored_ids = self._stored_ids(pending)  # before the totals: see the module docstring
        totals: dict[BudgetKey, Decimal] = {}
        by_window: dict[tuple[datetime, datetime], list[BudgetKey]] = {}
        for key, period in periods.items():
            by_window.setdefault((period.start, period.end), []).append(key)
        for (start, end), keys in by_window.items():
            window = SpendWindow(start, end, start, datetime.now(UTC))
            spend = read_spend(self._client, self._database, window, {key[0] for key in keys})
            for key in keys:
                found = spend.get((key[0], key[1]))
                totals[key] = found.period_usd if found else Decimal(0)
        with self._lock:
            self._stored.update(totals)
            for request_id in stored_ids:
                self._drop(request_id)

    def _stored_ids(self, request_ids: list[str]) -> set[str]:
        if not request_ids:
            return set()
        with store_errors("reading stored request ids"):
            result = self._client.query(
                f"SELECT DISTINCT request_id FROM {self._database}.events "
                "WHERE request_id IN {ids:Array(String)}", parameters={"ids": request_ids})
        return {row[0] for row in result.result_rows}

    def run_refresh(self, stop: threading.Event) -> None:
        """Refresh every ``refresh_interval_s`` until ``stop``; a failed read is retried."""
        while not stop.is_set():
            try:
                self.refresh()
            except Exception:  # the store is restarting ClickHouse, or a bug: keep going
                log.exception("ledger refresh failed; the last stored totals stay in use")
            stop.wait(self._settings.refresh_interval_s)


def serve(ledger: Ledger, path: str, body: bytes) -> bytes:
    """Answer one ledger request (``ledger_wire``); ``ValueError``/``KeyError`` if malformed."""
    if path == ADMIT_PATH:
        return encode_decision(ledger.admit(decode_admission(body)))
    data: dict[str, Any] = orjson.loads(body)
    ledger.settle(str(data["request_id"]), str(data["provider"]), str(data["model"]),
                  Usage.model_validate(data["usage"]))
    return b"{}"
