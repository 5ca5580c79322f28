"""A deterministic LLM provider speaking the OpenAI and Anthropic wire formats.

It serves every surface the gateway proxies: ``/v1/chat/completions``,
``/v1/responses``, ``/v1/embeddings``, ``/v1/models`` (OpenAI format, or
Anthropic's when the request carries ``anthropic-version``), ``/v1/messages``
and ``/v1/messages/count_tokens``, whole and streamed, with usage, errors and
rate-limit answers (see ``knobs`` for the ``x-sim-*`` switches).

Answers are derived from the prompt (same prompt, same answer, same ids), so a
direct call and a proxied one can be compared byte for byte. Usage is counted
at about four characters per token.

When built with ``api_key``, every call must present that key (Bearer,
``x-api-key`` or ``api-key``) or is refused with 401 in the provider's format,
as a real provider would; the headers of the last call are kept in
``app.state.last_headers`` so tests can check what the gateway forwarded.

It also bills: every successful chat, Responses, embeddings and messages call
is recorded, with the usage it was billed, in a ``ServedBook``
(``app.state.served``) -- streams cut short and ``x-sim-no-usage`` calls
included, since a provider bills them; count_tokens is free. The providers'
admin report APIs are served from that book (see ``reports_api``): OpenAI's
``/v1/organization/usage/completions``, ``/usage/embeddings``, ``/costs``,
``/projects`` and ``/projects/{id}/api_keys``; Anthropic's
``/v1/organizations/usage_report/messages``, ``/cost_report`` and ``/api_keys``.
They take ``admin_key`` when it is set (any key when None). Calls are billed to
the presented key, in project ``x-sim-project`` (OpenAI) or workspace
``x-sim-workspace`` (Anthropic) when given. ``POST /sim/served`` tells the
provider about calls it served without being sent them (volume runs);
``DELETE /sim/served`` empties the book.

``POST /sim/faults`` makes it fail calls for some models for a window of time
(``faults``; ``app.state.faults``): answered before anything is billed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterline.schemas import Usage

from . import anthropic_api, openai_api
from .faults import Faults, fault_routes
from .knobs import Knobs, anthropic_error, apply_delay, json_response, openai_error, simulated_error
from .reports_api import report_routes
from .served import ServedBook
from .text import PromptCache, created_s, estimate_tokens

__all__ = ["create_provider_app", "estimate_tokens"]

Handler = Callable[[dict[str, Any], Knobs, PromptCache], tuple[Response, Usage | None]]

#: The models the simulator lists; it answers for any model name regardless.
LISTED_MODELS = ("gpt-4o-mini", "gpt-4.1", "o4-mini", "text-embedding-3-small",
                 "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")


def _presented_key(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("x-api-key") or request.headers.get("api-key") or ""


def _list_models(anthropic: bool) -> Response:
    if anthropic:
        data = [{"type": "model", "id": name, "display_name": name,
                 "created_at": "2025-01-01T00:00:00Z"} for name in LISTED_MODELS]
        return json_response({"data": data, "has_more": False, "first_id": data[0]["id"],
                              "last_id": data[-1]["id"]})
    return json_response({"object": "list", "data": [
        {"id": name, "object": "model", "created": created_s(name), "owned_by": "meterline-sim"}
        for name in LISTED_MODELS]})


def create_provider_app(*, api_key: str | None = None, admin_key: str | None = None,
                        served: ServedBook | None = None) -> Starlette:
    cache = PromptCache()
    book = served if served is not None else ServedBook()
    faults = Faults()

    def gate(request: Request, anthropic: bool) -> Response | None:
        request.app.state.last_headers = dict(request.headers)
        if api_key is not None and _presented_key(request) != api_key:
            if anthropic:
                return anthropic_error(401, "invalid x-api-key", "authentication_error")
            return openai_error(401, "Incorrect API key provided.", code="invalid_api_key")
        return None

    def endpoint(handler: Handler, surface: str) -> Callable[[Request], Any]:
        kind = surface.partition(".")[0]
        anthropic = kind == "anthropic"

        async def handle(request: Request) -> Response:
            if (refused := gate(request, anthropic)) is not None:
                return refused
            knobs = Knobs.from_headers(request.headers)
            await apply_delay(knobs)
            if knobs.status:
                return simulated_error(knobs.status, anthropic)
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict):
                message = "The request body is not valid JSON."
                return anthropic_error(400, message) if anthropic else openai_error(400, message)
            if status := faults.status_for(body.get("model")):
                return simulated_error(status, anthropic)
            response, usage = handler(body, knobs, cache)
            if usage is not None and 200 <= response.status_code < 300:
                scope = request.headers.get("x-sim-workspace" if anthropic else "x-sim-project")
                book.record(datetime.now(UTC), kind, _presented_key(request), body["model"],
                            surface, usage, scope or "")
            return response
        return handle

    async def models(request: Request) -> Response:
        anthropic = "anthropic-version" in request.headers
        if (refused := gate(request, anthropic)) is not None:
            return refused
        knobs = Knobs.from_headers(request.headers)
        await apply_delay(knobs)
        if knobs.status:
            return simulated_error(knobs.status, anthropic)
        return _list_models(anthropic)

    app = Starlette(routes=[
        Route("/v1/chat/completions", endpoint(openai_api.chat, "openai.chat"),
              methods=["POST"]),
        Route("/v1/responses", endpoint(openai_api.responses, "openai.responses"),
              methods=["POST"]),
        Route("/v1/embeddings", endpoint(openai_api.embeddings, "openai.embeddings"),
              methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/messages", endpoint(anthropic_api.messages, "anthropic.messages"),
              methods=["POST"]),
        Route("/v1/messages/count_tokens",
              endpoint(anthropic_api.count_tokens, "anthropic.count_tokens"), methods=["POST"]),
        *report_routes(book, admin_key),
        *fault_routes(faults),
    ])
    app.state.last_headers = {}
    app.state.served = book
    app.state.faults = faults
    return app
