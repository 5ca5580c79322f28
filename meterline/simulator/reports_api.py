"""The providers' admin APIs, served from what the simulated provider served (``ServedBook``).

OpenAI (``Authorization: Bearer <admin key>``):

- ``GET /v1/organization/usage/completions`` and ``/usage/embeddings``: ``start_time``
  (Unix s, required), ``end_time``, ``bucket_width`` (``1d``, ``1h``), ``group_by``
  (repeated or comma-separated), ``limit`` (buckets per page), ``page``. ``input_tokens``
  include ``input_cached_tokens``, as OpenAI counts them.
- ``GET /v1/organization/costs``: daily, ``group_by`` ``project_id``, ``line_item``
  (``"<model>, input"``, ``"<model>, cached input"``, ``"<model>, output"``). The amount is
  a JSON *number* written from the exact ``Decimal`` (digits as stored, never via float):
  read it with a decimal-aware parser to keep every digit.
- ``GET /v1/organization/projects`` and ``/projects/{project_id}/api_keys``.

Anthropic (``x-api-key: <admin key>`` and ``anthropic-version``):

- ``GET /v1/organizations/usage_report/messages``: ``starting_at`` (RFC 3339, required),
  ``ending_at``, ``bucket_width`` (``1d``, ``1h``), ``group_by[]``, ``limit``, ``page``.
- ``GET /v1/organizations/cost_report``: daily, ``group_by[]`` ``workspace_id``,
  ``description`` (one result per model and token type); amounts in cents, as strings.
- ``GET /v1/organizations/api_keys``.

Buckets are aligned to UTC hours or days; a bucket overlapping the range is reported
whole; empty buckets are listed with no results. Keys listed are the keys served.
With ``admin_key`` set any other key is refused (401); with None any key is accepted.
Bad parameters are refused with 400 in the provider's error format.

Control endpoints (no auth): ``POST /sim/served`` records calls the provider is told it
served (see ``served.parse_calls``), ``DELETE /sim/served`` forgets everything.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .knobs import anthropic_error, json_response, openai_error
from .report_params import (
    ANTHROPIC_GROUPS,
    OPENAI_GROUPS,
    TOKEN_TYPES,
    WIDTHS,
    BadParam,
    cursor,
    decimal_json,
    dollars,
    fields,
    group_by,
    grouped,
    int_param,
    iso,
    page,
    rfc3339,
)
from .served import ServedBook, parse_calls


def _openai_usage(book: ServedBook, family: str, request: Request) -> Response:
    dims = group_by(request, OPENAI_GROUPS[family])
    start = int_param(request, "start_time")
    end = int_param(request, "end_time", -1)
    width, first, stop, following = page(request, start, None if end < 0 else end,
                                          request.query_params.get("bucket_width") or "1d")
    names = OPENAI_GROUPS[family]
    data = []
    for bucket, tallies in book.buckets("openai", first, stop, width, family):
        results = []
        for values, tally in grouped(tallies, dims):
            row: dict[str, Any] = {
                "object": f"organization.usage.{family}.result",
                "input_tokens": (tally.input_tokens + tally.cache_read_tokens
                                 + tally.cache_write_5m_tokens + tally.cache_write_1h_tokens)}
            if family == "completions":
                row |= {"output_tokens": tally.output_tokens,
                        "input_cached_tokens": tally.cache_read_tokens,
                        "input_audio_tokens": 0, "output_audio_tokens": 0}
            results.append({**row, "num_model_requests": tally.requests,
                            **fields(names, values)})
        data.append({"object": "bucket", "start_time": bucket, "end_time": bucket + width,
                     "results": results})
    return json_response({"object": "page", "data": data, "has_more": following is not None,
                          "next_page": cursor(following)})


def _openai_costs(book: ServedBook, request: Request) -> Response:
    dims = group_by(request, ("project_id", "line_item"))
    start = int_param(request, "start_time")
    end = int_param(request, "end_time", -1)
    width, first, stop, following = page(request, start, None if end < 0 else end,
                                          request.query_params.get("bucket_width") or "1d",
                                          max_limit=180)
    if width != WIDTHS["1d"]:
        raise BadParam("bucket_width: costs are reported per day only (1d)")
    scope_dims = [dim for dim in dims if dim != "line_item"]
    data = []
    for bucket, tallies in book.buckets("openai", first, stop, width):
        results = []
        per = grouped(tallies, [*scope_dims, "model"]) if "line_item" in dims else \
            grouped(tallies, scope_dims)
        for values, tally in per:
            parts: list[tuple[str | None, Decimal, int]] = [(None, tally.cost, tally.requests)]
            if "line_item" in dims:
                model = values["model"]
                parts = [(f"{model}, input", tally.input_cost + tally.cache_write_5m_cost
                          + tally.cache_write_1h_cost, tally.input_tokens),
                         (f"{model}, cached input", tally.cache_read_cost,
                          tally.cache_read_tokens),
                         (f"{model}, output", tally.output_cost, tally.output_tokens)]
            results += [{"object": "organization.costs.result",
                         "amount": {"value": dollars(amount), "currency": "usd"},
                         "line_item": line, "project_id": values.get("project_id")}
                        for line, amount, count in parts if count or amount]
        data.append({"object": "bucket", "start_time": bucket, "end_time": bucket + width,
                     "results": results})
    body = {"object": "page", "data": data, "has_more": following is not None,
            "next_page": cursor(following)}
    return Response(decimal_json(body), media_type="application/json")


def _after(items: list[dict[str, Any]], request: Request, after_name: str) -> tuple[
        list[dict[str, Any]], bool]:
    limit = int_param(request, "limit", 20)
    if not 1 <= limit <= 1000:
        raise BadParam(f"limit: must be between 1 and 1000, got {limit}")
    if after := request.query_params.get(after_name):
        ids = [item["id"] for item in items]
        if after not in ids:
            raise BadParam(f"{after_name}: no such id {after!r}")
        items = items[ids.index(after) + 1:]
    return items[:limit], len(items) > limit


def _openai_projects(book: ServedBook, request: Request) -> Response:
    created: dict[str, int] = {}
    for key in book.keys("openai"):
        for scope in key.scopes:
            created.setdefault(scope, int(key.first_seen.timestamp()))
    items = [{"id": project, "object": "organization.project", "name": project,
              "created_at": at, "archived_at": None, "status": "active"}
             for project, at in sorted(created.items(), key=lambda kv: (kv[1], kv[0]))]
    page, more = _after(items, request, "after")
    return json_response({"object": "list", "data": page, "has_more": more,
                          "first_id": page[0]["id"] if page else None,
                          "last_id": page[-1]["id"] if page else None})


def _openai_keys(book: ServedBook, request: Request) -> Response:
    project = request.path_params["project_id"]
    keys = [key for key in book.keys("openai") if project in key.scopes]
    if not keys:
        return openai_error(404, f"No such project: {project}", code="not_found")
    items = [{"object": "organization.project.api_key", "redacted_value": key.hint,
              "name": f"meterline-sim {key.hint or '(no key)'}",
              "created_at": int(key.first_seen.timestamp()), "id": key.id} for key in keys]
    page, more = _after(items, request, "after")
    return json_response({"object": "list", "data": page, "has_more": more,
                          "first_id": page[0]["id"] if page else None,
                          "last_id": page[-1]["id"] if page else None})


def _anthropic_usage(book: ServedBook, request: Request) -> Response:
    dims = group_by(request, ANTHROPIC_GROUPS)
    start = rfc3339(request, "starting_at", True)
    assert start is not None
    width, first, stop, following = page(request, start, rfc3339(request, "ending_at", False),
                                          request.query_params.get("bucket_width") or "1d")
    data = []
    for bucket, tallies in book.buckets("anthropic", first, stop, width):
        results = [{"uncached_input_tokens": tally.input_tokens,
                    "cache_creation": {"ephemeral_1h_input_tokens": tally.cache_write_1h_tokens,
                                       "ephemeral_5m_input_tokens": tally.cache_write_5m_tokens},
                    "cache_read_input_tokens": tally.cache_read_tokens,
                    "output_tokens": tally.output_tokens,
                    "server_tool_use": {"web_search_requests": 0},
                    **fields(ANTHROPIC_GROUPS, values)}
                   for values, tally in grouped(tallies, dims)]
        data.append({"starting_at": iso(bucket), "ending_at": iso(bucket + width),
                     "results": results})
    return json_response({"data": data, "has_more": following is not None,
                          "next_page": cursor(following)})


def _cents(usd: Decimal) -> str:
    return f"{(usd * 100).normalize():f}" if usd else "0"


def _anthropic_costs(book: ServedBook, request: Request) -> Response:
    dims = group_by(request, ("workspace_id", "description"))
    start = rfc3339(request, "starting_at", True)
    assert start is not None
    width, first, stop, following = page(request, start, rfc3339(request, "ending_at", False),
                                          request.query_params.get("bucket_width") or "1d")
    if width != WIDTHS["1d"]:
        raise BadParam("bucket_width: costs are reported per day only (1d)")
    detail = ("model", "service_tier", "context_window")
    by_description = "description" in dims
    scope_dims = ["workspace_id"] if "workspace_id" in dims else []
    data = []
    for bucket, tallies in book.buckets("anthropic", first, stop, width):
        results: list[dict[str, Any]] = []
        for values, tally in grouped(tallies, scope_dims + (list(detail) * by_description)):
            none = {"currency": "USD", "amount": _cents(tally.cost),
                    "workspace_id": values.get("workspace_id"), "description": None,
                    "cost_type": None, "context_window": None, "model": None,
                    "service_tier": None, "token_type": None}
            if not by_description:
                results.append(none)
                continue
            results += [{**none, "amount": _cents(getattr(tally, cost)),
                         "description": f"{values['model']} Usage - {label}",
                         "cost_type": "tokens", "token_type": token_type,
                         **{name: values[name] for name in detail}}
                        for token_type, label, cost, tokens in TOKEN_TYPES
                        if getattr(tally, tokens) or getattr(tally, cost)]
        data.append({"starting_at": iso(bucket), "ending_at": iso(bucket + width),
                     "results": results})
    return json_response({"data": data, "has_more": following is not None,
                          "next_page": cursor(following)})


def _anthropic_keys(book: ServedBook, request: Request) -> Response:
    status = request.query_params.get("status")
    workspace = request.query_params.get("workspace_id")
    items = [{"id": key.id, "type": "api_key", "name": f"meterline-sim {key.hint or '(no key)'}",
              "partial_key_hint": key.hint, "status": "active", "workspace_id": key.scope,
              "created_at": iso(int(key.first_seen.timestamp()))}
             for key in book.keys("anthropic")
             if status in (None, "", "active") and workspace in (None, "", key.scope)]
    page, more = _after(items, request, "after_id")
    return json_response({"data": page, "has_more": more,
                          "first_id": page[0]["id"] if page else None,
                          "last_id": page[-1]["id"] if page else None})


async def _record_served(book: ServedBook, request: Request) -> Response:
    def parse_and_record(body: bytes) -> int:
        return book.record_calls(parse_calls(orjson.loads(body)))

    try:
        recorded = await run_in_threadpool(parse_and_record, await request.body())
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        return openai_error(400, f"/sim/served: {exc}")
    return json_response({"recorded": recorded})


def report_routes(book: ServedBook, admin_key: str | None) -> list[Route]:
    """The admin report routes and the ``/sim/served`` control routes over ``book``."""

    def openai(handler: Callable[[ServedBook, Request], Response]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            presented = header[7:].strip() if header[:7].lower() == "bearer " else ""
            if admin_key is not None and presented != admin_key:
                return openai_error(401, "Incorrect API key provided: this endpoint needs an "
                                    "admin key.", code="invalid_api_key")
            try:
                return handler(book, request)
            except BadParam as exc:
                return openai_error(400, str(exc))
        return endpoint

    def anthropic(handler: Callable[[ServedBook, Request], Response]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            if admin_key is not None and request.headers.get("x-api-key") != admin_key:
                return anthropic_error(401, "invalid x-api-key", "authentication_error")
            if not request.headers.get("anthropic-version"):
                return anthropic_error(400, "anthropic-version: header is required")
            try:
                return handler(book, request)
            except BadParam as exc:
                return anthropic_error(400, str(exc))
        return endpoint

    async def record(request: Request) -> Response:
        return await _record_served(book, request)

    async def clear(request: Request) -> Response:
        book.clear()
        return json_response({"cleared": True})

    def usage(family: str) -> Callable[[ServedBook, Request], Response]:
        return lambda served, request: _openai_usage(served, family, request)

    org, orgs = "/v1/organization", "/v1/organizations"
    return [
        Route("/sim/served", record, methods=["POST"]),
        Route("/sim/served", clear, methods=["DELETE"]),
        Route(f"{org}/usage/completions", openai(usage("completions")), methods=["GET"]),
        Route(f"{org}/usage/embeddings", openai(usage("embeddings")), methods=["GET"]),
        Route(f"{org}/costs", openai(_openai_costs), methods=["GET"]),
        Route(f"{org}/projects", openai(_openai_projects), methods=["GET"]),
        Route(f"{org}/projects/{{project_id}}/api_keys", openai(_openai_keys), methods=["GET"]),
        Route(f"{orgs}/usage_report/messages", anthropic(_anthropic_usage), methods=["GET"]),
        Route(f"{orgs}/cost_report", anthropic(_anthropic_costs), methods=["GET"]),
        Route(f"{orgs}/api_keys", anthropic(_anthropic_keys), methods=["GET"]),
    ]
