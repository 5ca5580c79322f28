"""The proxy: one authenticated call forwarded upstream, and its envelope.

``Proxy.forward`` is the whole life of a call:

1. authenticate the virtual key from the headers (refusing a revoked or
   expired one), then read the body (bounded) and parse just enough JSON to
   know the model and whether a stream is wanted;
2. route to a provider (a routing rule may pick a cheaper target, or record
   that it would: ``rules``), check that the key may call it, pass the egress gate
   and the limits and budgets (``enforce``), and forward the body unchanged,
   except that the served
   model is substituted when an alias maps it to another name, and a streamed
   chat completion is asked for usage (``stream_options.include_usage``); an
   alias with several targets is posted through ``fallback``, which moves the
   call to the next target when one fails before answering;
3. return the provider's answer unchanged, whole or streamed (``relay``),
   reading usage from it as it passes; a target of the other API shape than
   the call gets it translated there and back instead (``translate``);
4. when the answer ends, fails, or the client leaves, emit one envelope
   (``finish``), after the last byte has gone to the client.

Gateway errors raise ``GatewayError`` and the app renders them in the caller's
API format; a call that got past authentication still gets an envelope
(``gateway_error``, ``upstream_timeout`` or ``upstream_error``). Errors the
provider returns pass through untouched, status and body (a cross-shape call's
are rendered in the caller's format), and get one too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiohttp
import orjson

from meterline.policy.messages import request_messages
from meterline.schemas import (
    GatewaySettings,
    KeySettings,
    Outcome,
    Surface,
    Usage,
    new_request_id,
)

from .attribution import REPO_HEADER, resolve_repo
from .auth import KeyRing, UnknownKey, check_allowed, check_usable
from .call import CallRecord
from .egress import EgressGate
from .emitter import EnvelopeEmitter
from .enforce import Enforcer
from .errors import GatewayError, Unauthenticated, UpstreamTimeout, UpstreamUnavailable, upstream_errors
from .fallback import Fallback, upstream_post
from .metrics import GatewayMetrics
from .model_list import merged_list
from .relay import Receive, Send, UsageChunkFilter, read_whole, relay
from .request import (
    ask_for_stream_usage,
    parse_json_object,
    presented_key,
    read_body,
    request_headers,
    requested_model,
)
from .routing import FallbackRoute, Route, Router
from .rules import RuleBook
from .translate import request_body
from .translate.serve import serve
from .usage import FREE, StreamUsageTracker, usage_from_body

log = logging.getLogger(__name__)

# Response headers not copied back: hop-by-hop ones and those the server sets.
_DROP_RESPONSE_HEADERS = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"content-encoding",
    b"server", b"date",
})


REQUEST_ID_HEADER = b"x-meterline-request-id"



def response_headers(raw: Any, request_id: str,
                     length: int | None = None) -> list[tuple[bytes, bytes]]:
    """Upstream response headers as ASGI pairs, minus hop-by-hop ones, plus our request id.

    The request id is the envelope's: a user reporting a problem can quote it.
    """
    out = [(name.lower(), value) for name, value in raw
           if name.lower() not in _DROP_RESPONSE_HEADERS]
    out.append((REQUEST_ID_HEADER, request_id.encode()))
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    return out


def _outcome_of(error: GatewayError) -> Outcome:
    if isinstance(error, UpstreamTimeout):
        return "upstream_timeout"
    return "upstream_error" if isinstance(error, UpstreamUnavailable) else "gateway_error"


class Proxy:
    """Forwards calls upstream over one pooled aiohttp session.

    ``start`` must be awaited (in the app's lifespan) before the first call and
    ``close`` after the last. Calls never block on Kafka: ``finish`` hands the
    envelope to the emitter, whose ``emit`` only queues it.
    """

    def __init__(self, settings: GatewaySettings, keyring: KeyRing, router: Router,
                 emitter: EnvelopeEmitter, metrics: GatewayMetrics, gate: EgressGate,
                 enforcer: Enforcer, rules: RuleBook | None = None) -> None:
        self._settings = settings
        self._gate = gate
        self._enforcer = enforcer
        self._keyring = keyring
        self._router = router
        self._emitter = emitter
        self._metrics = metrics
        self._fallback = Fallback(settings, metrics, gate.policy)
        self._rules = rules
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # Redirects are the client's to follow (allow_redirects=False at each call): a
        # proxy that follows them would send the provider key wherever one points.
        connector = aiohttp.TCPConnector(limit=self._settings.max_upstream_connections,
                                         ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",),
            timeout=aiohttp.ClientTimeout(total=None,
                                          sock_connect=self._settings.upstream_connect_timeout_s,
                                          sock_read=self._settings.upstream_timeout_s),
        )

    async def close(self) -> None:
        await self._enforcer.close()
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def _record(started_ns: int, headers: dict[str, str], surface: Surface,
                key: KeySettings) -> CallRecord:
        return CallRecord(request_id=new_request_id(), received_at=datetime.now(UTC),
                          started_ns=started_ns, surface=surface, key=key,
                          user_agent=headers.get("user-agent", ""))

    def _begin(self, scope: dict[str, Any], surface: Surface) -> tuple[CallRecord, dict[str, str]]:
        started_ns = time.perf_counter_ns()
        headers = request_headers(scope)
        key = self._keyring.lookup(presented_key(headers))
        return self._record(started_ns, headers, surface, key), headers

    async def _authenticated(self, scope: dict[str, Any],
                             surface: Surface) -> tuple[CallRecord, dict[str, str]]:
        """``_begin``, waiting for the registry before refusing a key it does not know yet."""
        started_ns = time.perf_counter_ns()
        headers = request_headers(scope)
        try:
            key = await self._keyring.lookup_waiting(presented_key(headers))
        except UnknownKey as unknown:  # to the caller and the metrics: just that
            raise Unauthenticated(unknown.message) from None
        return self._record(started_ns, headers, surface, key), headers

    async def forward(self, scope: dict[str, Any], receive: Receive, send: Send,
                      surface: Surface, anthropic_style: bool) -> None:
        call, headers = await self._authenticated(scope, surface)
        try:
            check_usable(call.key, call.received_at)
            await self._forward(call, headers, scope, receive, send, anthropic_style)
        except GatewayError as exc:
            exc.request_id = call.request_id
            self.finish(call, status=exc.status_for("anthropic" if anthropic_style else "openai"),
                        outcome=_outcome_of(exc), usage=Usage(source="missing"),
                        error_class=exc.error_class)
            raise

    async def _forward(self, call: CallRecord, headers: dict[str, str], scope: dict[str, Any],
                       receive: Receive, send: Send, anthropic_style: bool) -> None:
        body = await read_body(headers, receive, self._settings.max_body_bytes,
                               self._settings.body_timeout_s)
        call.request_bytes = len(body)
        call.request_sha256 = hashlib.sha256(body).hexdigest()
        payload = parse_json_object(body)
        call.payload = payload
        call.requested_model = model = requested_model(payload)
        call.repo, call.repo_source = resolve_repo(headers.get(REPO_HEADER), payload, call.key)
        route = self._router.route(anthropic_style, model, call.request_id)
        if self._rules is not None:  # routing rules (docs/routing.md): may pick a cheaper target
            route = self._rules.apply(call, route, anthropic_style)
        call.provider, call.served_model = route.provider_name, route.served_model
        check_allowed(call.key, route.provider_name, route.served_model)
        call.stream = payload.get("stream") is True
        rewrite = route.served_model != model
        if rewrite:
            payload["model"] = route.served_model
        strip_usage = call.stream and call.surface == "openai.chat" and ask_for_stream_usage(payload)
        if route.cross_shape:  # raises Untranslatable before anything leaves
            body = request_body(call.surface, payload, route.served_model, route.provider.kind)
        elif rewrite or strip_usage:
            body = orjson.dumps(payload)
        messages = request_messages(call.surface, payload)
        await self._gate.admit(call, messages)  # raises PolicyRefused before anything leaves
        call.messages = messages
        await self._enforcer.admit(call, payload)  # raises RateLimited, BudgetExceeded

        assert self._session is not None, "Proxy.start() not awaited"
        call.upstream_started_ns = time.perf_counter_ns()
        if isinstance(route, FallbackRoute):
            route, upstream = await self._fallback.send(self._session, call, route, payload,
                                                        body, scope, headers)
        else:
            with upstream_errors(route.provider_name):
                upstream = await upstream_post(self._session, route, body, scope, headers)
        if route.cross_shape:  # the serving target speaks the other API shape
            await serve(call, route, upstream, receive, send, include_usage=not strip_usage,
                        headers=partial(response_headers, upstream.raw_headers, call.request_id),
                        finish=self.finish)
            return
        if call.stream and upstream.content_type == "text/event-stream":
            tracker = StreamUsageTracker(call.surface)
            end = await relay(call, upstream, response_headers(upstream.raw_headers, call.request_id),
                              receive,
                              send, tracker, UsageChunkFilter(tracker) if strip_usage else None)
            self.finish(call, status=upstream.status, outcome=end.outcome,
                        usage=tracker.result(payload), error_class=end.error_class,
                        served_model=tracker.model)
            return
        await self._whole(call, upstream, send)

    async def _whole(self, call: CallRecord, upstream: aiohttp.ClientResponse, send: Send) -> None:
        data = await read_whole(call, upstream, call.provider)
        await send({"type": "http.response.start", "status": upstream.status,
                    "headers": response_headers(upstream.raw_headers, call.request_id,
                                                            len(data))})
        await send({"type": "http.response.body", "body": data})
        status = upstream.status
        if status >= 400:
            # the provider refused or failed the call and bills nothing for it
            self.finish(call, status=status, outcome="upstream_error", usage=FREE,
                        error_class=f"http_{status}")
            return
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        served = parsed.get("model") if isinstance(parsed, dict) else None
        self.finish(call, status=status, outcome="ok",
                    usage=usage_from_body(call.surface, parsed, call.payload),
                    served_model=served if isinstance(served, str) else "")

    async def list_models(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """``GET /v1/models``: the default provider's list plus aliases (see ``model_list``)."""
        call, headers = self._begin(scope, "openai.models")
        anthropic = "anthropic-version" in headers
        route: Route = self._router.default(anthropic)
        call.provider = route.provider_name
        assert self._session is not None, "Proxy.start() not awaited"
        status: int | None = None
        data, raw_headers = b"", []
        call.upstream_started_ns = time.perf_counter_ns()
        try:
            async with asyncio.timeout(self._settings.models_list_timeout_s):
                async with self._session.get(route.url(scope["path"]), allow_redirects=False,
                                             headers=route.headers(headers.items())) as upstream:
                    data, status = await upstream.read(), upstream.status
                    raw_headers = response_headers(upstream.raw_headers, call.request_id, len(data))
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("models list: upstream %s unavailable (%s)", route.provider_name,
                        type(exc).__name__, extra={"request_id": call.request_id})
        merged = merged_list(status, data, self._router.aliases, anthropic)
        if merged is not None:
            status, data = merged
            raw_headers = [(b"content-type", b"application/json"),
                           (b"content-length", str(len(data)).encode()),
                           (REQUEST_ID_HEADER, call.request_id.encode())]
        elif status is None:
            exc_ = UpstreamUnavailable(f"The upstream provider '{route.provider_name}' could not "
                                       "list its models.")
            exc_.request_id = call.request_id
            self.finish(call, status=exc_.status, outcome="upstream_error", usage=FREE,
                        error_class="UpstreamUnavailable")
            raise exc_
        call.first_byte_at = datetime.now(UTC)
        call.response_hash.update(data)
        call.response_bytes = len(data)
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": data})
        self.finish(call, status=status, outcome="ok" if status < 400 else "upstream_error",
                    usage=FREE, error_class="" if status < 400 else f"http_{status}")

    def finish(self, call: CallRecord, *, status: int, outcome: Outcome, usage: Usage,
               error_class: str = "", served_model: str = "") -> None:
        """Emit the call's envelope and record its metrics. Called once per call."""
        envelope, added_s = call.envelope(status=status, outcome=outcome, usage=usage,
                                          policy=self._settings.audit_body_policy,
                                          error_class=error_class, served_model=served_model)
        self._emitter.emit(envelope)
        if call.admitted:
            self._enforcer.settle(call, usage)
        if call.messages:
            self._gate.ship(call, call.messages)
        metrics = self._metrics
        total_s = (time.perf_counter_ns() - call.started_ns) / 1e9
        if outcome != "gateway_error":  # the app counts the calls it refuses itself
            metrics.observe_call(call.surface, status, total_s, added_s, usage.source)
        if outcome in ("upstream_error", "upstream_timeout"):
            metrics.upstream_errors.labels(call.provider or "none", error_class or outcome).inc()
            log.warning("upstream %s: %s status=%d", outcome, error_class, status,
                        extra={"request_id": call.request_id, "surface": call.surface,
                               "provider": call.provider, "key_id": call.key.id})
        elif outcome == "client_disconnect":
            metrics.client_disconnects.labels(call.surface).inc()
            log.info("client left mid-stream", extra={"request_id": call.request_id,
                                                      "surface": call.surface,
                                                      "key_id": call.key.id})
