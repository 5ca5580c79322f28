"""The gateway ASGI app: routes, error rendering, lifespan.

A plain ASGI callable rather than a framework app, because it is on the path
of every call: a dict lookup dispatches ``(path, method)`` to the proxy, and
one ``except GatewayError`` renders every refusal in the caller's API format
(Anthropic paths get Anthropic errors, everything else OpenAI's), so no
handler formats an error itself. Anything else raised is a bug: it is logged
with a traceback, answered 500 in the same format if the response had not
started, and never takes the worker down.

Surfaces (method, path, envelope surface):

    POST /v1/chat/completions       openai.chat
    POST /v1/responses              openai.responses
    POST /v1/embeddings             openai.embeddings
    GET  /v1/models                 openai.models  (see ``model_list``)
    POST /v1/messages               anthropic.messages
    POST /v1/messages/count_tokens  anthropic.count_tokens

Besides them: ``/healthz``, ``/readyz``, ``/metrics`` (``operations``), the
key API under ``/admin/keys`` (``key_api``) and the dashboard under ``/ui``;
the last two are found by prefix behind the route lookup's miss.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from meterline.governance.registry import KeyEventFollower, KeyRegistry
from meterline.schemas import Settings, Surface
from meterline.schemas.store_auth import resolve_token

from .auth import KeyRing
from .egress import EgressGate
from .emitter import EnvelopeEmitter
from .enforce import Enforcer
from .errors import ApiStyle, GatewayError, InternalError, MethodNotAllowed, NotFound
from .key_api import KeyApi, is_key_api
from .key_service import KeyService
from .logs import configure_logging
from .metrics import GatewayMetrics
from .operations import Endpoint, operations, send_bytes
from .proxy import REQUEST_ID_HEADER, Proxy
from .relay import Receive, Send
from .request import ClientGone
from .routing import Router
from .rules import RuleBook

log = logging.getLogger(__name__)

#: (method, path, surface) of every proxied endpoint.
SURFACES: tuple[tuple[str, str, Surface], ...] = (
    ("POST", "/v1/chat/completions", "openai.chat"),
    ("POST", "/v1/responses", "openai.responses"),
    ("POST", "/v1/embeddings", "openai.embeddings"),
    ("GET", "/v1/models", "openai.models"),
    ("POST", "/v1/messages", "anthropic.messages"),
    ("POST", "/v1/messages/count_tokens", "anthropic.count_tokens"),
)

Handler = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def api_style(path: str) -> ApiStyle:
    return "anthropic" if path.startswith("/v1/messages") else "openai"


def _default_emitter(settings: Settings) -> EnvelopeEmitter:
    return EnvelopeEmitter(settings.kafka, settings.gateway)


class GatewayApp:
    """The gateway as an ASGI application; build it with ``create_app``."""

    def __init__(self, settings: Settings, emitter: EnvelopeEmitter) -> None:
        self.settings = settings
        self.emitter = emitter
        self.metrics = GatewayMetrics()
        self.metrics.attach_emitter(emitter)
        if settings.gateway.roles_state_file:
            self.metrics.attach_roles(Path(settings.gateway.roles_state_file))
        self._attach_delivery_metrics()
        self.gate = EgressGate(settings)
        self.keys = KeyRegistry()
        self.key_follower = KeyEventFollower(settings.kafka, self.keys, role="gateway")
        self.store_url = f"http://{settings.store.host}:{settings.store.port}"
        self._snapshot: asyncio.Task[None] | None = None
        enforcer = Enforcer(settings, self.store_url, lambda: resolve_token(settings, "read"),
                            self.metrics)
        self.keyring = KeyRing(settings.keys, settings.keys_file, self.keys,
                               self.key_follower.news)
        router = Router(settings)
        self.proxy = Proxy(settings.gateway, self.keyring, router, emitter,
                           self.metrics, self.gate, enforcer,
                           RuleBook.from_settings(settings, router, self.gate.policy))
        self.key_service = KeyService(settings, self.keyring)
        self.key_api = KeyApi(self.key_service, settings.gateway)
        self._routes: dict[str, dict[str, Handler]] = {}
        self._ui: Handler | None = None
        for method, path, surface in SURFACES:
            self._routes[path] = {method: self._surface_handler(surface, path)}
        for path, endpoint in operations(emitter, self.metrics).items():
            self._routes[path] = {"GET": self._operation_handler(endpoint)}

    def _attach_delivery_metrics(self) -> None:
        """The emitter's own delivery and spool gauges, when it offers them (issue 4)."""
        if not callable(getattr(self.emitter, "stats", None)):
            return
        from .delivery_metrics import DeliveryCollector

        self.metrics.registry.register(DeliveryCollector(self.emitter))

    def _surface_handler(self, surface: Surface, path: str) -> Handler:
        proxy, anthropic_style = self.proxy, api_style(path) == "anthropic"
        if surface == "openai.models":
            return proxy.list_models

        async def handle(scope: dict[str, Any], receive: Receive, send: Send) -> None:
            await proxy.forward(scope, receive, send, surface, anthropic_style)
        return handle

    @staticmethod
    def _operation_handler(endpoint: Endpoint) -> Handler:
        async def handle(scope: dict[str, Any], receive: Receive, send: Send) -> None:
            await endpoint(send)
        return handle

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        path: str = scope["path"]
        try:
            methods = self._routes.get(path)
            if methods is None and path.startswith("/ui"):
                await self._dashboard()(scope, receive, tracked_send)
                return
            if methods is None and is_key_api(path):
                await self.key_api(scope, receive, tracked_send)
                return
            if methods is None:
                raise NotFound(f"Unsupported path: {scope['method']} {path}. This gateway serves "
                               "/v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models, "
                               "/v1/messages and /v1/messages/count_tokens.")
            handler = methods.get(scope["method"])
            if handler is None:
                raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {path}; "
                                       f"use {', '.join(methods)}.")
            await handler(scope, receive, tracked_send)
        except ClientGone:
            return
        except GatewayError as exc:
            await self._refuse(exc, path, send, started)
        except Exception as exc:  # a bug: answer 500, keep the worker serving
            log.exception("unhandled error on %s %s", scope["method"], path)
            await self._refuse(InternalError(f"Internal gateway error ({type(exc).__name__}); "
                                             "it has been logged."), path, send, started)

    def _dashboard(self) -> Handler:
        """The dashboard app (ingest/ui), built on first use: the prefix check sits behind the
        route lookup's miss, so proxied paths never pay for it, and a gateway nobody browses
        never imports FastAPI or the templates."""
        if self._ui is None:
            from .ui import create_ui_app

            # starlette types ASGI messages as MutableMapping, this module as dict: same protocol
            self._ui = cast(Handler, create_ui_app(self.settings, key_service=self.key_service))
        return self._ui

    async def _refuse(self, error: GatewayError, path: str, send: Send, started: bool) -> None:
        style = api_style(path)
        status = error.status_for(style)
        self.metrics.errors.labels(type(error).__name__).inc()
        self.metrics.requests.labels(_surface_of(path), str(status)).inc()
        if status >= 500 or status in (401, 413):
            log.warning("refused %s: %s %s", path, type(error).__name__, error.message,
                        extra={"request_id": error.request_id} if error.request_id else None)
        if not started:
            extra = error.headers
            if error.request_id:
                extra += ((REQUEST_ID_HEADER, error.request_id.encode()),)
            await send_bytes(send, status, error.render(style), extra_headers=extra)

    async def _load_key_states(self) -> None:
        from .key_snapshot import load_key_states
        from .ui.store_reader import StoreReader

        reader = StoreReader(self.store_url, token=lambda: resolve_token(self.settings, "read"),
                             timeout_s=10.0)
        await load_key_states(self.keys, reader)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.key_follower.start()
                    self._snapshot = asyncio.create_task(self._load_key_states())
                    await self.proxy.start()
                except Exception as exc:  # the server reports it and exits non-zero
                    log.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._snapshot is not None:
                    self._snapshot.cancel()
                await self.proxy.close()
                await asyncio.to_thread(self.key_follower.close)
                await asyncio.to_thread(self.gate.close)
                undelivered = await asyncio.to_thread(self.emitter.close)
                if undelivered:
                    log.error("gateway stopped with %d envelopes undelivered", undelivered)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _surface_of(path: str) -> str:
    return next((surface for _, known, surface in SURFACES if known == path), "none")


def create_app(settings: Settings, *, emitter: EnvelopeEmitter | None = None) -> GatewayApp:
    """The gateway app. ``emitter`` defaults to the durable one for ``settings``.

    Logging is switched to ``gateway.log_format`` first, so the emitter's start-up
    lines (spool recovery, replay) are structured like everything after them.
    """
    configure_logging(settings.gateway.log_format)
    return GatewayApp(settings, emitter or _default_emitter(settings))
