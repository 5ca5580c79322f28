"""Rate limits and blocking budgets at the gateway: what applies to a call, and asking the ledger.

``Enforcer.admit`` runs after routing and the egress gate, before anything
goes upstream. It works out which per-minute limits (``rpm``/``tpm`` on the
key, its user and its team, else the ``governance.*_limits`` defaults) and
which budgets in ``block`` mode apply to the call. With none, it returns at
once: no round trip, the call costs what it did before. With some, it asks
the store's ledger (``governance.ledger``), which every gateway instance
shares, and raises ``RateLimited`` or ``BudgetExceeded`` on a refusal.
``settle`` tells the ledger what an admitted call really used, after its last
byte has gone to the client.

When the ledger cannot be asked (the store is down or slow past
``governance.ledger_timeout_s``), ``governance.on_unavailable`` decides:
``open`` serves the call and counts it in
``meterline_enforcement_unavailable_total`` (logged at most once a minute),
``closed`` refuses it with 503 (``EnforcementUnavailable``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp

from meterline.governance.ledger_wire import (
    ADMIT_PATH,
    SETTLE_PATH,
    Admission,
    BudgetAsk,
    LimitAsk,
    Scope,
    decode_decision,
    encode_admission,
    encode_settlement,
)
from meterline.schemas import KeySettings, Settings, Usage
from meterline.schemas.governance import BudgetMode, RateLimit
from meterline.schemas.store_auth import auth_headers

from .call import CallRecord
from .errors import BudgetExceeded, EnforcementUnavailable, RateLimited
from .estimate import request_chars
from .metrics import GatewayMetrics

log = logging.getLogger(__name__)

#: Request fields that cap the output, by API: the first present wins.
_MAX_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_WARN_EVERY_S = 60.0


def worst_input_tokens(payload: dict[str, Any]) -> int:
    """An upper bound on the prompt's tokens: two characters per token, half the usual
    estimate's four, since code and non-English text tokenize denser. Counted at the
    full input price even where the provider will read some from its cache."""
    return (request_chars(payload) + 1) // 2


def max_output_tokens(payload: dict[str, Any], default: int) -> int:
    for name in _MAX_OUTPUT_FIELDS:
        value = payload.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return default


class Enforcer:
    """Decides which limits and budgets apply, and asks the ledger; one per gateway process."""

    def __init__(self, settings: Settings, store_url: str,
                 token: Callable[[], str | None], metrics: GatewayMetrics) -> None:
        self._settings = settings
        self._governance = settings.governance
        self._teams = {team.name: team for team in settings.teams}
        self._users = {user.name: user for user in settings.users}
        self._store_url = store_url.rstrip("/")
        self._token = token
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._warned_at = 0.0

    # -- what applies -------------------------------------------------------------------------

    def limits_for(self, key: KeySettings) -> tuple[LimitAsk, ...]:
        team, user = self._teams.get(key.team), self._users.get(key.user)
        g = self._governance
        found = (_limit("key", key.id, key.rpm, key.tpm, g.key_limits),
                 _limit("user", key.user, user.rpm if user else None,
                        user.tpm if user else None, g.user_limits),
                 _limit("team", key.team, team.rpm if team else None,
                        team.tpm if team else None, g.team_limits))
        return tuple(limit for limit in found if limit is not None)

    def budgets_for(self, key: KeySettings) -> tuple[BudgetAsk, ...]:
        """The budgets in ``block`` mode over this key's calls (a budget needs its team
        configured, as for alerts: the team gives its period and zone)."""
        team = self._teams.get(key.team)
        if team is None:
            return ()
        user = self._users.get(key.user)
        default_mode = team.budget_mode or self._settings.budgets.mode
        period, timezone = self._settings.budget_calendar(team)
        candidates: tuple[tuple[Scope, str, Decimal | None, BudgetMode | None], ...] = (
            ("team", team.name, team.budget_usd, team.budget_mode),
            ("user", key.user, user.budget_usd if user else None,
             user.budget_mode if user else None),
            ("key", key.id, key.budget_usd, key.budget_mode))
        return tuple(BudgetAsk(scope, subject, usd, period, timezone)
                     for scope, subject, usd, mode in candidates
                     if usd is not None and (mode or default_mode) == "block")

    # -- asking the ledger --------------------------------------------------------------------

    async def admit(self, call: CallRecord, payload: dict[str, Any]) -> None:
        """Admit ``call`` or raise; sets ``call.admitted`` when the ledger holds it."""
        limits, budgets = self.limits_for(call.key), self.budgets_for(call.key)
        if not limits and not budgets:
            return
        ask = Admission(call.request_id, call.provider, call.served_model,
                        worst_input_tokens(payload),
                        max_output_tokens(payload, self._governance.default_max_output_tokens),
                        limits, budgets)
        try:
            answer = await self._post(ADMIT_PATH, encode_admission(ask))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._unavailable(call, exc)
            return
        decision = decode_decision(answer)
        if decision.admitted:
            call.admitted = True
            return
        self._metrics.refusals.labels(decision.reason or "unknown", decision.scope).inc()
        if decision.reason == "rate_limit":
            raise RateLimited(decision.message, retry_after_s=decision.retry_after_s,
                              tokens=decision.tokens)
        raise BudgetExceeded(decision.message)

    def settle(self, call: CallRecord, usage: Usage) -> None:
        """Tell the ledger what an admitted call used (in the background; never raises).

        Usage the gateway could not read (``missing``) is not sent: the reservation then
        holds its worst case until the call's event, priced by the pipeline, is stored."""
        if not call.admitted or usage.source == "missing":
            return
        body = encode_settlement(call.request_id, call.provider, call.served_model, usage)
        task = asyncio.get_running_loop().create_task(self._settle(body, call.request_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle(self, body: bytes, request_id: str) -> None:
        try:
            await self._post(SETTLE_PATH, body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # the reservation stays at its worst case until the call's event is stored
            log.warning("ledger settle failed (%s); the reservation holds its worst case until "
                        "the event is stored", type(exc).__name__,
                        extra={"request_id": request_id})

    async def _post(self, path: str, body: bytes) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._governance.ledger_timeout_s))
        async with self._session.post(self._store_url + path, data=body,
                                      headers=auth_headers(self._token())) as response:
            data = await response.read()
            if response.status != 200:
                raise ValueError(f"ledger answered {response.status}: {data[:200]!r}")
            return data

    def _unavailable(self, call: CallRecord, exc: BaseException) -> None:
        mode = self._governance.on_unavailable
        self._metrics.enforcement_unavailable.labels(mode).inc()
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S or mode == "closed":
            self._warned_at = now
            log.warning("enforcement ledger unavailable (%s: %s); governance.on_unavailable=%s",
                        type(exc).__name__, exc, mode, extra={"request_id": call.request_id})
        if mode == "closed":
            raise EnforcementUnavailable(
                "Limits and budgets cannot be checked right now, and this gateway is set to "
                "refuse calls then (governance.on_unavailable: closed). Retry shortly.")

    async def close(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=2.0)
        if self._session is not None:
            await self._session.close()


def _limit(scope: Scope, subject: str, rpm: int | None, tpm: int | None,
           default: RateLimit) -> LimitAsk | None:
    rpm = rpm if rpm is not None else default.rpm
    tpm = tpm if tpm is not None else default.tpm
    return LimitAsk(scope, subject, rpm or None, tpm or None) if (rpm or tpm) else None

