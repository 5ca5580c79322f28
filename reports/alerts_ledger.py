"""The budget-alert ledger: each (budget, period, alert) is sent once, by one claimant.

ClickHouse has no transactions and no compare-and-set, so sending once rests on
an append-only claim log (table ``budget_alerts``, one row per step) and a
settle delay. ``AlertLedger.claim`` runs these steps:

1. Read the key's rows. If it is *done* (a ``sent`` or ``superseded`` row) or
   has a *live* claim (``claimed``, not yet resolved by ``sent``, ``failed`` or
   ``yielded``, and younger than ``claim_timeout_s``), stop: nothing to do, or
   someone else is doing it.
2. Insert our claim: a fresh claimant id, stamped by the *server's* clock
   (``recorded_at DEFAULT now64(6)``), so all claimants share one clock.
3. Wait ``claim_settle_s``.
4. Read the key's rows again. We won if the key is still not done and ours is
   the earliest live claim (ties broken by claimant id). A loser writes
   ``yielded`` at once, releasing its claim.

The caller then sends, and records ``sent`` (or ``failed``, which releases the
key for the next check to retry).

Guarantee: at most one winner per key, provided every claim insert becomes
visible to readers within ``claim_settle_s`` of its server timestamp. Then,
when a claimant reads in step 4, every claim stamped before its own is already
visible, so all claimants agree on the earliest. That holds on one server and
in one chdb process (where ``reports.alerts`` also serialises checks with a
lock); on a replicated cluster, insert with ``insert_quorum`` or read with
``select_sequential_consistency``, or the settle delay must cover replication.

Liveness: a claimant that dies after step 2 leaves a claim that blocks the key
until ``claim_timeout_s``; the next check after that claims afresh and sends,
so a crash delays an alert but never loses it. ``BudgetSettings`` refuses a
timeout shorter than the longest possible delivery, so a slow but living
sender is never taken over.

The one gap: a crash after Slack accepted the message but before ``sent`` was
recorded. Slack webhooks have no idempotency key, so the next claimant sends
again. We prefer one duplicate after a crash to a lost alert.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from meterline.sinks.errors import store_errors

from .budget_rules import Scope

log = logging.getLogger(__name__)

State = Literal["claimed", "sent", "failed", "yielded", "superseded", "undelivered"]
_DONE: frozenset[str] = frozenset({"sent", "superseded"})
_RESOLVES_CLAIM: frozenset[str] = frozenset({"sent", "failed", "yielded"})
_COLUMNS = ["alert_key", "scope", "subject", "team", "period", "alert", "claimant", "state",
            "spend_usd", "budget_usd", "detail"]


@dataclass(frozen=True, slots=True)
class AlertRef:
    """One alert of one budget in one period: the unit that is sent at most once."""

    scope: Scope
    subject: str
    team: str
    period: str
    alert: str

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.subject}:{self.period}:{self.alert}"


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """What the ledger says about one key: done, and the live claims, earliest first."""

    done: bool = False
    live_claims: tuple[tuple[datetime, str], ...] = ()
    #: An ``undelivered`` row exists: the alert came due while its team had no webhook.
    undelivered: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """A won claim: the holder must record ``sent`` or ``failed`` for it."""

    ref: AlertRef
    claimant: str
    spend_usd: Decimal
    budget_usd: Decimal
    superseding: tuple[AlertRef, ...] = field(default=())


class AlertLedger:
    """Claims and outcomes in ``<database>.budget_alerts``; see the module docstring.

    Every method may block on ClickHouse and raises ``sinks.StoreUnavailable``
    when it refuses; ``claim`` also sleeps ``settle_s``. Safe to use from
    several threads and processes at once: that is what the protocol is for.
    """

    def __init__(self, client: Any, database: str, *, settle_s: float, timeout_s: float) -> None:
        self._client = client
        self._table = f"{database}.budget_alerts"
        self._settle_s = settle_s
        self._timeout_s = timeout_s

    def status(self, keys: Sequence[str]) -> dict[str, KeyStatus]:
        """The status of each key (keys never seen are not done and have no claims)."""
        if not keys:
            return {}
        with store_errors("reading the alert ledger"):
            now = self._client.query("SELECT now64(6, 'UTC')").result_rows[0][0]
            rows = self._client.query(
                f"SELECT alert_key, claimant, state, recorded_at FROM {self._table} "
                "WHERE alert_key IN {keys:Array(String)}",
                parameters={"keys": list(keys)}).result_rows
        by_key: dict[str, list[tuple[str, str, datetime]]] = {}
        for key, claimant, state, recorded_at in rows:
            by_key.setdefault(key, []).append((claimant, state, recorded_at))
        statuses = {}
        for key in keys:
            entries = by_key.get(key, [])
            resolved = {claimant for claimant, state, _ in entries if state in _RESOLVES_CLAIM}
            live = sorted((recorded_at, claimant) for claimant, state, recorded_at in entries
                          if state == "claimed" and claimant not in resolved
                          and (now - recorded_at).total_seconds() < self._timeout_s)
            statuses[key] = KeyStatus(done=any(state in _DONE for _, state, _ in entries),
                                      live_claims=tuple(live),
                                      undelivered=any(state == "undelivered"
                                                      for _, state, _ in entries))
        return statuses

    def claim(self, ref: AlertRef, spend_usd: Decimal, budget_usd: Decimal,
              superseding: Iterable[AlertRef] = ()) -> Claim | None:
        """Try to become the one sender of ``ref``; None when done, taken, or lost."""
        before = self.status([ref.key])[ref.key]
        if before.done or before.live_claims:
            return None
        claim = Claim(ref, uuid.uuid4().hex, spend_usd, budget_usd, tuple(superseding))
        self._append(claim, [ref], "claimed")
        time.sleep(self._settle_s)
        after = self.status([ref.key])[ref.key]
        if after.done or not after.live_claims or after.live_claims[0][1] != claim.claimant:
            log.info("alert %s: another checker claimed it first; yielding", ref.key)
            self._append(claim, [ref], "yielded")
            return None
        return claim

    def record_sent(self, claim: Claim) -> None:
        """Step after delivery: the alert is done, and so is each alert it superseded."""
        self._append(claim, [claim.ref], "sent")
        if claim.superseding:
            self._append(claim, claim.superseding, "superseded", f"covered by {claim.ref.alert}")

    def record_failed(self, claim: Claim, reason: str) -> None:
        """Delivery gave up: release the claim so a later check retries."""
        self._append(claim, [claim.ref], "failed", reason)

    def record_undelivered(self, ref: AlertRef, spend_usd: Decimal, budget_usd: Decimal,
                           reason: str) -> None:
        """The alert is due but its team has no usable webhook: say so once, send nothing.

        Not a claim and not done: once a webhook is configured, the next check
        claims and sends the alert as usual.
        """
        self._append(Claim(ref, "", spend_usd, budget_usd), [ref], "undelivered", reason)

    def _append(self, claim: Claim, refs: Iterable[AlertRef], state: State,
                detail: str = "") -> None:
        rows = [[ref.key, ref.scope, ref.subject, ref.team, ref.period, ref.alert, claim.claimant,
                 state, claim.spend_usd, claim.budget_usd, detail] for ref in refs]
        with store_errors(f"recording {state} in the alert ledger"):
            self._client.insert(self._table, rows, column_names=_COLUMNS)
