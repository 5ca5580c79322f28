"""Fallback: a call moved to its alias's next target when one fails before any byte.

``Fallback.send`` stands in for the one upstream POST when the call's route has
fallbacks (an alias with more than one target). Any other call never comes
here: it costs what it did before. ``send`` posts the call to its first target
and judges the answer by its status, before a byte has gone to the client:

- 429 or 500-599 (Anthropic's 529 included), or no answer at all (unreachable,
  or none within ``gateway.upstream_timeout_s``, see ``upstream_errors``): the
  target failed, and the call moves on to the next target, the body re-encoded
  with that target's model;
- anything else (2xx, or a 4xx the next target would refuse as well) is the
  answer, whatever follows: a stream that fails after its first byte is never
  retried, since part of it has reached the client.

Moving on is bounded three ways: at most ``gateway.max_attempts`` requests per
call; the retry budget (``RetryBudget``), so an outage adds at most a share of
the traffic to the next target's load; and each target's circuit breaker
(``breaker``): a target whose breaker is open is skipped without a request,
unless every target's is, when the call goes to its first target anyway.
Fallback targets the key may not call, or that an egress rule in enforce mode
refuses, are passed over; an alerting rule's breach is recorded, as it is for
the first target. The targets of one alias may speak different API shapes: a
target of the other shape than the call gets the call translated
(``translate``), and one that cannot express it (``Untranslatable``) is passed
over too. ``send`` returns the target that answered, so the answer is read and
priced in that target's shape.

Every target the call moves on from becomes an ``Attempt`` on the envelope
(``call.attempts``), and ``call.provider`` and ``call.served_model`` are the
serving target's. When the last target tried fails too, its failure is the
answer, exactly as without fallback. Failed attempts are not billed by the
providers (they produced no output), so they carry no usage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NamedTuple

import aiohttp
import orjson

from meterline.policy.rules import EgressPolicy
from meterline.schemas import Attempt, GatewaySettings, PolicyBreach

from .auth import check_allowed
from .breaker import Breakers, BreakerState
from .call import CallRecord
from .errors import (
    GatewayError,
    ModelNotAllowed,
    Untranslatable,
    UpstreamTimeout,
    UpstreamUnavailable,
    upstream_errors,
)
from .metrics import GatewayMetrics
from .routing import FallbackRoute, Route
from .translate import request_body, upstream_path

log = logging.getLogger(__name__)

_WINDOW_S = 60
_BREAKER_LEVEL: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}


def retryable(status: int) -> bool:
    """An answer another target may serve better: rate limited or a server error."""
    return status == 429 or status >= 500


def permitted(call: CallRecord, target: Route, policy: EgressPolicy
              ) -> tuple[bool, PolicyBreach | None]:
    """Whether ``call`` may go to ``target`` instead of its own route: the key's model lists
    allow it and the egress policy enforces no breach there; and the breach it makes there
    (alerted on, not enforced), if any. Fallback and routing rules pass over a target that
    is not."""
    try:
        check_allowed(call.key, target.provider_name, target.served_model)
    except ModelNotAllowed:
        return False, None
    breach = policy.judge(repo=call.repo, team=call.key.team, user=call.key.user,
                          provider=target.provider_name, model=target.served_model,
                          today=call.received_at.date())
    return breach is None or not breach.enforced, breach


def upstream_post(session: aiohttp.ClientSession, route: Route, body: bytes,
                  scope: dict[str, Any], headers: dict[str, str]
                  ) -> Awaitable[aiohttp.ClientResponse]:
    """The call's POST to ``route``, for the caller to await (no coroutine of its own).

    A cross-shape call goes to the path of the provider's shape, without the query string.
    """
    url = (route.url(upstream_path(route.anthropic_style)) if route.cross_shape
           else route.url(scope["path"], scope.get("query_string", b"")))
    return session.post(url, data=body, headers=route.headers(headers.items()),
                        allow_redirects=False)


class RetryBudget:
    """Retries in the last minute stay under ``max(floor, ratio x calls)``.

    Envoy's retry budget, over a minute: ``calls`` are the calls that could fall
    back (``record_call``), kept with the retries in one-second buckets, so a
    target's outage adds at most ``ratio`` of the traffic (or ``floor`` retries a
    minute at low traffic) to the next target. Not thread-safe: one event loop.
    """

    def __init__(self, ratio: float, floor: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ratio, self._floor, self._clock = ratio, floor, clock
        self._seconds = [-_WINDOW_S] * _WINDOW_S
        self._calls = [0] * _WINDOW_S
        self._retries = [0] * _WINDOW_S

    def _bucket(self) -> int:
        second = int(self._clock())
        index = second % _WINDOW_S
        if self._seconds[index] != second:
            self._seconds[index] = second
            self._calls[index] = self._retries[index] = 0
        return index

    def record_call(self) -> None:
        self._calls[self._bucket()] += 1

    def allows(self) -> bool:
        """Whether one more retry fits in the budget now."""
        now = self._seconds[self._bucket()]
        live = [i for i, second in enumerate(self._seconds) if now - second < _WINDOW_S]
        retries = sum(self._retries[i] for i in live)
        return retries < max(self._floor, self._ratio * sum(self._calls[i] for i in live))

    def spend(self) -> None:
        self._retries[self._bucket()] += 1


class _Next(NamedTuple):
    """A target to send to, the body it is sent, the egress breach sending there makes
    (alerting), and the targets passed over before it because their breakers are open."""

    route: Route
    body: bytes
    breach: PolicyBreach | None
    skipped: list[Route]


class Fallback:
    """The attempt loop, the retry budget and the breakers of one gateway process."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics, policy: EgressPolicy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_attempts = settings.max_attempts
        self._metrics = metrics
        self._policy = policy
        self.budget = RetryBudget(settings.retry_budget_ratio,
                                  settings.retry_budget_min_per_minute, clock)
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_open_s,
                                 self._breaker_changed, clock)

    async def send(self, session: aiohttp.ClientSession, call: CallRecord, route: FallbackRoute,
                   payload: dict[str, Any], body: bytes, scope: dict[str, Any],
                   headers: dict[str, str]) -> tuple[Route, aiohttp.ClientResponse]:
        """The target that answered ``call`` (``route`` or a fallback), and its answer.

        Raises the last target's ``UpstreamUnavailable`` / ``UpstreamTimeout`` when it
        did not answer. ``body`` is ``route``'s; ``payload``, the caller's parsed body, is
        re-encoded (or translated, for a target of the other API shape) per target.
        """
        self.budget.record_call()
        targets = self._targets(call, route, payload, body)
        chosen = next(targets)
        target, body = self._enter(call, chosen), chosen.body
        sent = 1
        while True:
            breaker = self.breakers.get(target.provider_name, target.served_model)
            started_ns = time.perf_counter_ns()
            answer = await self._request(session, target, body, scope, headers)
            if isinstance(answer, aiohttp.ClientResponse) and not retryable(answer.status):
                breaker.succeeded()
                return target, answer
            breaker.failed()
            following = self._following(targets, target, sent)
            if following is None:
                if isinstance(answer, GatewayError):
                    raise answer
                return target, answer
            if isinstance(answer, GatewayError):
                status, error_class = answer.status, type(answer).__name__
            else:
                status, error_class = answer.status, f"http_{answer.status}"
                answer.close()
            self._left(call, target, status, error_class,
                       round((time.perf_counter_ns() - started_ns) / 1e6, 3))
            target, body = self._enter(call, following), following.body
            sent += 1

    @staticmethod
    def _body_for(call: CallRecord, target: Route, payload: dict[str, Any]) -> bytes:
        """The call's body with ``target``'s model substituted, translated when ``target``
        speaks the other API shape (raising ``Untranslatable`` if it cannot be)."""
        if target.cross_shape:
            return request_body(call.surface, payload, target.served_model,
                                target.provider.kind)
        payload["model"] = target.served_model
        return orjson.dumps(payload)

    @staticmethod
    async def _request(session: aiohttp.ClientSession, target: Route, body: bytes,
                       scope: dict[str, Any], headers: dict[str, str]
                       ) -> aiohttp.ClientResponse | GatewayError:
        try:
            with upstream_errors(target.provider_name):
                return await upstream_post(session, target, body, scope, headers)
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            return exc

    def _following(self, targets: Iterator[_Next], failed: Route, sent: int) -> _Next | None:
        """The next target after ``failed``, or None when the call must answer its failure."""
        if sent >= self._max_attempts:
            return None
        if not self.budget.allows():
            self._metrics.retry_budget_exhausted.labels(failed.provider_name).inc()
            return None
        following = next(targets, None)
        if following is not None:
            self.budget.spend()
        return following

    def _enter(self, call: CallRecord, chosen: _Next) -> Route:
        """Make ``chosen`` the call's target, recording the targets skipped on the way."""
        for skipped in chosen.skipped:
            self._left(call, skipped, 0, "breaker_open", 0.0)
        if chosen.breach is not None:
            call.breaches.append(chosen.breach)
        route = chosen.route
        call.provider, call.served_model = route.provider_name, route.served_model
        return route

    def _left(self, call: CallRecord, target: Route, status: int, error_class: str,
              upstream_ms: float) -> None:
        call.attempts += (Attempt(provider=target.provider_name, model=target.served_model,
                                  status=status, error_class=error_class,
                                  upstream_ms=upstream_ms),)
        self._metrics.fallbacks.labels(target.provider_name, error_class).inc()

    def _targets(self, call: CallRecord, route: FallbackRoute, payload: dict[str, Any],
                 body: bytes) -> Iterator[_Next]:
        """The targets to send to, in order, skipping those whose breaker is open; the
        first target alone when every breaker is open. Lazy: a call served by its first
        target looks at no other."""
        skipped: list[Route] = []
        sent_any = False
        for target, target_body, breach in self._candidates(call, route, payload, body):
            if self.breakers.get(target.provider_name, target.served_model).admit():
                yield _Next(target, target_body, breach, skipped)
                sent_any, skipped = True, []
            else:
                skipped.append(target)
        if not sent_any:
            yield _Next(route, body, None, [])

    def _candidates(self, call: CallRecord, route: FallbackRoute, payload: dict[str, Any],
                    body: bytes) -> Iterator[tuple[Route, bytes, PolicyBreach | None]]:
        """``route`` (already checked) with ``body``, then the fallbacks this call may be
        sent to, each with its body; a fallback of the other API shape that cannot express
        the call (``Untranslatable``) is passed over."""
        yield route, body, None
        for target in route.alias.after(route):
            allowed, breach = permitted(call, target, self._policy)
            if not allowed:
                continue
            try:
                target_body = self._body_for(call, target, payload)
            except Untranslatable:
                continue
            yield target, target_body, breach

    def _breaker_changed(self, provider: str, model: str, state: BreakerState) -> None:
        self._metrics.breaker_transitions.labels(provider, model, state).inc()
        self._metrics.breaker_state.labels(provider, model).set(_BREAKER_LEVEL[state])
        report = log.warning if state == "open" else log.info
        report("circuit breaker of %s/%s is %s", provider, model, state.replace("_", "-"),
               extra={"provider": provider})
