"""The simulated provider's usage and cost report APIs, served from what it served.

Every expected figure comes from what the client received (its usage blocks) or from
``PriceBook`` quotes computed here, call by call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from meterline.processors.price_book import PriceBook
from meterline.schemas import Usage
from meterline.simulator import create_provider_app
from meterline.simulator.knobs import SimulatedCut
from meterline.simulator.served import ServedBook, key_hint, provider_key_id

ADMIN = "sk-admin-0123456789"
OAI_KEY = "sk-proj-gateway-0001"
ANT_KEY = "sk-ant-api03-gateway-0001"
PRICES = PriceBook(overrides=[], provider_kinds={"openai": "openai", "anthropic": "anthropic"})
DAY = 86_400
LONG = "alpha beta gamma delta " * 250  # > 1024 tokens: a repeat reads OpenAI's cache


@pytest.fixture
def book() -> ServedBook:
    return ServedBook()


@pytest.fixture
def client(book: ServedBook) -> Iterator[TestClient]:
    with TestClient(create_provider_app(admin_key=ADMIN, served=book)) as test_client:
        yield test_client


Params = list[tuple[str, str | int | float | bool | None]]


def _oai(client: TestClient, path: str, query: Sequence[tuple[str, str]] = (),
         key: str = ADMIN) -> Any:
    params: Params = [*query]
    response = client.get(path, params=params, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def _ant(client: TestClient, path: str, query: Sequence[tuple[str, str]] = ()) -> Any:
    params: Params = [*query]
    response = client.get(path, params=params,
                          headers={"x-api-key": ADMIN, "anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.text
    return response.json()


def _today() -> tuple[int, int]:
    """Yesterday 00:00 to tomorrow 00:00 UTC (Unix s): a range holding any call just made."""
    midnight = int(datetime.now(UTC).timestamp()) // DAY * DAY
    return midnight - DAY, midnight + DAY


def _rfc(epoch: int) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%dT%H:%M:%SZ}"


def _rows(page: Any) -> list[dict[str, Any]]:
    return [row for bucket in page["data"] for row in bucket["results"]]


def _sse(text: str) -> list[Any]:
    return [orjson.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def _quote(kind: str, model: str, usage: Usage) -> tuple[Decimal, Decimal, Decimal]:
    """(input excluding cache reads, cache reads, output) as the book splits a call."""
    now = datetime.now(UTC)
    whole = PRICES.quote(kind, model, usage, now)
    assert whole is not None
    read = Decimal(0)
    if usage.cache_read_tokens:
        alone = PRICES.quote(kind, model, Usage(cache_read_tokens=usage.cache_read_tokens,
                                                source="provider"), now)
        assert alone is not None
        read = alone.input_cost_usd
    return whole.input_cost_usd - read, read, whole.output_cost_usd


def _openai_calls(client: TestClient) -> dict[str, list[Usage]]:
    """Chat (whole, streamed, cached, no-usage), Responses (whole, streamed), embeddings."""
    headers = {"authorization": f"Bearer {OAI_KEY}"}
    got: dict[str, list[Usage]] = {}

    def chat_usage(block: dict[str, Any]) -> Usage:
        cached = block["prompt_tokens_details"]["cached_tokens"]
        return Usage(input_tokens=block["prompt_tokens"] - cached, cache_read_tokens=cached,
                     output_tokens=block["completion_tokens"], source="provider")

    for content in ("hello there", LONG, LONG):
        reply = client.post("/v1/chat/completions", headers=headers, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})
        got.setdefault("gpt-4o-mini", []).append(chat_usage(reply.json()["usage"]))
    assert got["gpt-4o-mini"][2].cache_read_tokens > 0  # the repeat read the cache
    hidden = client.post("/v1/chat/completions", headers={**headers, "x-sim-no-usage": "1"},
                         json={"model": "gpt-4o-mini",
                               "messages": [{"role": "user", "content": "hello there"}]})
    assert "usage" not in hidden.json()
    got["gpt-4o-mini"].append(got["gpt-4o-mini"][0])  # same prompt: same billed usage
    stream = client.post("/v1/chat/completions", headers=headers, json={
        "model": "o4-mini", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "think about it"}]})
    got["o4-mini"] = [chat_usage(_sse(stream.text)[-1]["usage"])]
    assert got["o4-mini"][0].output_tokens > 0

    def responses_usage(block: dict[str, Any]) -> Usage:
        cached = block["input_tokens_details"]["cached_tokens"]
        return Usage(input_tokens=block["input_tokens"] - cached, cache_read_tokens=cached,
                     output_tokens=block["output_tokens"], source="provider")

    whole = client.post("/v1/responses", headers=headers,
                        json={"model": "gpt-4.1", "input": "one question"})
    streamed = client.post("/v1/responses", headers=headers,
                           json={"model": "gpt-4.1", "input": "another one", "stream": True})
    completed = [e for e in _sse(streamed.text) if e["type"] == "response.completed"]
    got["gpt-4.1"] = [responses_usage(whole.json()["usage"]),
                      responses_usage(completed[0]["response"]["usage"])]
    embedded = client.post("/v1/embeddings", headers=headers,
                           json={"model": "text-embedding-3-small", "input": ["a b c", "d e"]})
    got["text-embedding-3-small"] = [Usage(input_tokens=embedded.json()["usage"]["prompt_tokens"],
                                           source="provider")]
    return got


def test_openai_usage_matches_what_the_client_received(client: TestClient) -> None:
    got = _openai_calls(client)
    start, end = _today()
    span = [("start_time", str(start)), ("end_time", str(end)), ("group_by", "model,api_key_id"),
            ("group_by", "project_id")]
    rows = _rows(_oai(client, "/v1/organization/usage/completions", span))
    by_model = {row["model"]: row for row in rows}
    assert sorted(by_model) == ["gpt-4.1", "gpt-4o-mini", "o4-mini"]
    for model, row in by_model.items():
        usages = got[model]
        assert row == {
            "object": "organization.usage.completions.result",
            "input_tokens": sum(u.input_tokens + u.cache_read_tokens for u in usages),
            "output_tokens": sum(u.output_tokens for u in usages),
            "input_cached_tokens": sum(u.cache_read_tokens for u in usages),
            "input_audio_tokens": 0, "output_audio_tokens": 0,
            "num_model_requests": len(usages), "project_id": "proj_meterline_sim",
            "user_id": None, "api_key_id": provider_key_id("openai", OAI_KEY), "model": model,
            "batch": None, "service_tier": None}
    embeddings = _rows(_oai(client, "/v1/organization/usage/embeddings", span))
    assert embeddings == [{
        "object": "organization.usage.embeddings.result",
        "input_tokens": got["text-embedding-3-small"][0].input_tokens, "num_model_requests": 1,
        "project_id": "proj_meterline_sim", "user_id": None,
        "api_key_id": provider_key_id("openai", OAI_KEY), "model": "text-embedding-3-small"}]


def test_openai_costs_are_the_quotes_summed(client: TestClient) -> None:
    got = _openai_calls(client)
    start, end = _today()
    page = _oai(client, "/v1/organization/costs", [
        ("start_time", str(start)), ("end_time", str(end)), ("group_by", "line_item"),
        ("group_by", "project_id")])
    amounts = {row["line_item"]: row["amount"]["value"] for row in _rows(page)}
    expected: dict[str, Decimal] = {}
    for model, usages in got.items():
        for usage in usages:
            uncached, read, output = _quote("openai", model, usage)
            for item, amount, tokens in ((f"{model}, input", uncached, usage.input_tokens),
                                         (f"{model}, cached input", read,
                                          usage.cache_read_tokens),
                                         (f"{model}, output", output, usage.output_tokens)):
                if tokens:  # a line item is listed when it has tokens
                    expected[item] = expected.get(item, Decimal(0)) + amount
    assert "gpt-4o-mini, cached input" in expected
    assert "text-embedding-3-small, output" not in expected
    assert amounts == expected
    assert {row["project_id"] for row in _rows(page)} == {"proj_meterline_sim"}
    assert all(row["amount"]["currency"] == "usd" for row in _rows(page))
    total = _rows(_oai(client, "/v1/organization/costs",
                       [("start_time", str(start)), ("end_time", str(end))]))
    assert len(total) == 1 and total[0]["line_item"] is None
    assert total[0]["amount"]["value"] == sum(expected.values())


def test_cost_values_are_exact_json_numbers(client: TestClient, book: ServedBook) -> None:
    at = datetime(2026, 10, 2, 9, tzinfo=UTC)
    book.record(at, "openai", OAI_KEY, "gpt-4o-mini", "openai.chat",
                Usage(input_tokens=7, output_tokens=3, source="provider"))
    start = int(datetime(2026, 10, 2, tzinfo=UTC).timestamp())
    response = client.get("/v1/organization/costs", headers={"authorization": f"Bearer {ADMIN}"},
                          params={"start_time": start, "end_time": start + DAY})
    quote = PRICES.quote("openai", "gpt-4o-mini",
                         Usage(input_tokens=7, output_tokens=3, source="provider"), at)
    assert quote is not None and quote.cost_usd == Decimal("0.00000285")
    assert b'"amount":{"value":0.00000285,"currency":"usd"}' in response.content


def _anthropic_calls(client: TestClient) -> list[Usage]:
    """Plain, 5-minute cache write then read, 1-hour write, streamed, and hidden usage."""
    headers = {"x-api-key": ANT_KEY, "anthropic-version": "2023-06-01"}
    cached_5m = [{"type": "text", "text": "policy " * 400, "cache_control": {"type": "ephemeral"}}]
    cached_1h = [{"type": "text", "text": "manual " * 300,
                  "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    ask = [{"role": "user", "content": "what now?"}]
    bodies: list[dict[str, Any]] = [{"messages": ask}, {"system": cached_5m, "messages": ask},
              {"system": cached_5m, "messages": ask}, {"system": cached_1h, "messages": ask}]
    got: list[Usage] = []

    def usage_of(block: dict[str, Any], output: int) -> Usage:
        return Usage(input_tokens=block["input_tokens"], output_tokens=output,
                     cache_read_tokens=block["cache_read_input_tokens"],
                     cache_write_5m_tokens=block["cache_creation"]["ephemeral_5m_input_tokens"],
                     cache_write_1h_tokens=block["cache_creation"]["ephemeral_1h_input_tokens"],
                     source="provider")

    for body in bodies:
        reply = client.post("/v1/messages", headers=headers,
                            json={"model": "claude-sonnet-4-5", "max_tokens": 64, **body})
        got.append(usage_of(reply.json()["usage"], reply.json()["usage"]["output_tokens"]))
    assert [bool(u.cache_write_5m_tokens) for u in got] == [False, True, False, False]
    assert got[2].cache_read_tokens == got[1].cache_write_5m_tokens > 0
    assert got[3].cache_write_1h_tokens > 0
    stream = client.post("/v1/messages", headers=headers, json={
        "model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True,
        "messages": [{"role": "user", "content": "stream it"}]})
    events = _sse(stream.text)
    got.append(usage_of(events[0]["message"]["usage"], events[-2]["usage"]["output_tokens"]))
    hidden = client.post("/v1/messages", headers={**headers, "x-sim-no-usage": "1"}, json={
        "model": "claude-sonnet-4-5", "max_tokens": 64, "messages": ask})
    assert "usage" not in hidden.json()
    got.append(got[0])  # same prompt as the first: billed the same
    client.post("/v1/messages/count_tokens", headers=headers,
                json={"model": "claude-sonnet-4-5", "messages": ask})  # free: not billed
    return got


def test_anthropic_usage_and_costs_match_the_calls(client: TestClient) -> None:
    got = _anthropic_calls(client)
    start, end = _today()
    span = [("starting_at", _rfc(start)), ("ending_at", _rfc(end))]
    rows = _rows(_ant(client, "/v1/organizations/usage_report/messages", [
        *span, ("group_by[]", "model"), ("group_by[]", "api_key_id"),
        ("group_by[]", "workspace_id"), ("group_by[]", "service_tier"),
        ("group_by[]", "context_window")]))
    assert rows == [{
        "uncached_input_tokens": sum(u.input_tokens for u in got),
        "cache_creation": {"ephemeral_1h_input_tokens": sum(u.cache_write_1h_tokens for u in got),
                           "ephemeral_5m_input_tokens": sum(u.cache_write_5m_tokens for u in got)},
        "cache_read_input_tokens": sum(u.cache_read_tokens for u in got),
        "output_tokens": sum(u.output_tokens for u in got),
        "server_tool_use": {"web_search_requests": 0},
        "api_key_id": provider_key_id("anthropic", ANT_KEY),
        "workspace_id": "wrkspc_meterline_sim", "model": "claude-sonnet-4-5",
        "service_tier": "standard", "context_window": "0-200k"}]
    costs = _rows(_ant(client, "/v1/organizations/cost_report",
                       [*span, ("group_by[]", "workspace_id"), ("group_by[]", "description")]))
    now = datetime.now(UTC)
    parts: dict[str, Decimal] = {}
    for usage in got:
        whole = PRICES.quote("anthropic", "claude-sonnet-4-5", usage, now)
        assert whole is not None
        rest = whole.input_cost_usd
        for token_type, field in (("cache_read_input_tokens", "cache_read_tokens"),
                                  ("cache_creation.ephemeral_5m_input_tokens",
                                   "cache_write_5m_tokens"),
                                  ("cache_creation.ephemeral_1h_input_tokens",
                                   "cache_write_1h_tokens")):
            if tokens := getattr(usage, field):
                alone = PRICES.quote("anthropic", "claude-sonnet-4-5",
                                     Usage(**{field: tokens}, source="provider"), now)
                assert alone is not None
                parts[token_type] = parts.get(token_type, Decimal(0)) + alone.input_cost_usd
                rest -= alone.input_cost_usd
        parts["uncached_input_tokens"] = parts.get("uncached_input_tokens", Decimal(0)) + rest
        parts["output_tokens"] = parts.get("output_tokens", Decimal(0)) + whole.output_cost_usd
    assert {row["token_type"]: Decimal(row["amount"]) / 100 for row in costs} == parts
    assert all(row["currency"] == "USD" and row["cost_type"] == "tokens"
               and row["workspace_id"] == "wrkspc_meterline_sim"
               and row["model"] == "claude-sonnet-4-5" and row["service_tier"] == "standard"
               and row["description"].startswith("claude-sonnet-4-5 Usage - ")
               for row in costs)
    total = _rows(_ant(client, "/v1/organizations/cost_report", span))
    assert len(total) == 1 and Decimal(total[0]["amount"]) / 100 == sum(parts.values())
    assert total[0]["description"] is None and total[0]["workspace_id"] is None


def test_cut_streams_are_billed_errors_and_count_tokens_are_not(client: TestClient,
                                                                book: ServedBook) -> None:
    headers = {"authorization": f"Bearer {OAI_KEY}"}
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user",
                                                                  "content": "cut me"}]}
    with pytest.raises(SimulatedCut):
        client.post("/v1/chat/completions", headers={**headers, "x-sim-cut-after": "2"},
                    json=body)
    whole = client.post("/v1/chat/completions", headers=headers,
                        json={**body, "stream": False}).json()["usage"]
    refused = client.post("/v1/chat/completions", headers={**headers, "x-sim-status": "429"},
                          json=body)
    assert refused.status_code == 429
    invalid = client.post("/v1/chat/completions", headers=headers, json={"model": "x"})
    assert invalid.status_code == 400
    start, end = _today()
    rows = _rows(_oai(client, "/v1/organization/usage/completions",
                      [("start_time", str(start)), ("end_time", str(end))]))
    assert rows == [{"object": "organization.usage.completions.result",
                     "input_tokens": 2 * whole["prompt_tokens"],
                     "output_tokens": 2 * whole["completion_tokens"], "input_cached_tokens": 0,
                     "input_audio_tokens": 0, "output_audio_tokens": 0,
                     "num_model_requests": 2, "project_id": None, "user_id": None,
                     "api_key_id": None, "model": None, "batch": None, "service_tier": None}]


def _call(at: str, **fields: Any) -> dict[str, Any]:
    return {"at": at, "provider": "openai", "api_key": OAI_KEY, "model": "gpt-4o-mini",
            "surface": "openai.chat", **fields}


def test_sim_served_lands_in_its_buckets_and_pages(client: TestClient) -> None:
    calls = [_call(f"2026-10-{day:02d}T12:00:00+00:00", input_tokens=100 * day, output_tokens=day)
             for day in (1, 2, 5, 9)]
    calls += [_call("2026-10-02T10:15:00Z", input_tokens=7, cache_read_tokens=3,
                    model="gpt-4.1", service_tier="flex"),
              _call("2026-10-02T11:45:00+00:00", surface="openai.embeddings",
                    model="text-embedding-3-small", input_tokens=40)]
    assert client.post("/sim/served", json={"calls": calls}).json() == {"recorded": 6}
    start = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
    query = [("start_time", str(start)), ("end_time", str(start + 10 * DAY)), ("limit", "4"),
             ("group_by", "model"), ("group_by", "service_tier")]
    pages, cursor = [], None
    while True:
        page = _oai(client, "/v1/organization/usage/completions",
                    query + ([("page", cursor)] if cursor else []))
        pages.append(page)
        if not page["has_more"]:
            assert page["next_page"] is None
            break
        cursor = page["next_page"]
    assert [len(p["data"]) for p in pages] == [4, 4, 2]
    buckets = [b for p in pages for b in p["data"]]
    assert [b["start_time"] for b in buckets] == [start + i * DAY for i in range(10)]
    assert all(b["end_time"] == b["start_time"] + DAY for b in buckets)
    assert [[(r["model"], r["service_tier"], r["input_tokens"], r["output_tokens"],
              r["input_cached_tokens"], r["num_model_requests"]) for r in b["results"]]
            for b in buckets] == [
        [("gpt-4o-mini", "default", 100, 1, 0, 1)],
        [("gpt-4.1", "flex", 10, 0, 3, 1), ("gpt-4o-mini", "default", 200, 2, 0, 1)],
        [], [], [("gpt-4o-mini", "default", 500, 5, 0, 1)], [], [], [],
        [("gpt-4o-mini", "default", 900, 9, 0, 1)], []]
    hourly = _oai(client, "/v1/organization/usage/completions", [
        ("start_time", str(start + DAY)), ("end_time", str(start + 2 * DAY)),
        ("bucket_width", "1h"), ("limit", "24")])
    assert len(hourly["data"]) == 24 and not hourly["has_more"]
    assert {b["start_time"] - start - DAY: b["results"][0]["num_model_requests"]
            for b in hourly["data"] if b["results"]} == {10 * 3600: 1, 12 * 3600: 1}
    embedded = _oai(client, "/v1/organization/usage/embeddings", [
        ("start_time", str(start + DAY)), ("end_time", str(start + 2 * DAY))])
    assert [r["input_tokens"] for r in _rows(embedded)] == [40]
    costs = _oai(client, "/v1/organization/costs", [
        ("start_time", str(start)), ("end_time", str(start + 10 * DAY)), ("limit", "10")])
    by_day = {b["start_time"]: sum(r["amount"]["value"] for r in b["results"])
              for b in costs["data"]}
    expected: dict[int, Decimal] = {}
    for call in calls:
        at = datetime.fromisoformat(call["at"])
        tier = call.get("service_tier", "")
        usage = Usage(input_tokens=call.get("input_tokens", 0),
                      output_tokens=call.get("output_tokens", 0),
                      cache_read_tokens=call.get("cache_read_tokens", 0),
                      source="provider", service_tier=tier)
        quote = PRICES.quote("openai", call["model"], usage, at)
        assert quote is not None
        day = int(at.timestamp()) // DAY * DAY
        expected[day] = expected.get(day, Decimal(0)) + quote.cost_usd
    assert {day: value for day, value in by_day.items() if value} == expected


def test_anthropic_history_and_paging(client: TestClient) -> None:
    calls = [{"at": f"2026-09-{day:02d}T08:00:00+00:00", "provider": "anthropic",
              "api_key": "sk-ant-api03-personal-key", "model": "claude-haiku-4-5",
              "surface": "anthropic.messages", "input_tokens": day, "output_tokens": 2 * day,
              "cache_write_1h_tokens": 5, "scope": "wrkspc_personal_dev",
              "service_tier": "standard"} for day in range(1, 11)]
    calls.append({**calls[0], "input_tokens": 250_000, "cache_write_1h_tokens": 0})
    assert client.post("/sim/served", json={"calls": calls}).json() == {"recorded": 11}
    start = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp())
    query = [("starting_at", _rfc(start)), ("ending_at", _rfc(start + 10 * DAY)),
             ("group_by[]", "workspace_id"), ("group_by[]", "context_window")]
    first = _ant(client, "/v1/organizations/usage_report/messages", query)
    assert len(first["data"]) == 7 and first["has_more"]
    assert first["data"][1]["starting_at"] == "2026-09-02T00:00:00Z"
    assert first["data"][1]["ending_at"] == "2026-09-03T00:00:00Z"
    second = _ant(client, "/v1/organizations/usage_report/messages",
                  [*query, ("page", first["next_page"])])
    assert len(second["data"]) == 3 and not second["has_more"] and second["next_page"] is None
    assert [[(r["uncached_input_tokens"], r["cache_creation"]["ephemeral_1h_input_tokens"],
              r["context_window"], r["workspace_id"], r["model"]) for r in b["results"]]
            for b in first["data"][:2]] == [
        [(1, 5, "0-200k", "wrkspc_personal_dev", None),
         (250_000, 0, "200k-1M", "wrkspc_personal_dev", None)],
        [(2, 5, "0-200k", "wrkspc_personal_dev", None)]]
    keys = _ant(client, "/v1/organizations/api_keys")
    key_id = provider_key_id("anthropic", "sk-ant-api03-personal-key")
    assert keys == {"data": [{"id": key_id, "type": "api_key",
                              "name": "meterline-sim sk-...-key",
                              "partial_key_hint": "sk-...-key", "status": "active",
                              "workspace_id": "wrkspc_personal_dev",
                              "created_at": "2026-09-01T08:00:00Z"}],
                    "has_more": False, "first_id": key_id, "last_id": key_id}


def test_two_keys_two_ids_with_their_hints(client: TestClient) -> None:
    other = "sk-proj-personal-9999"
    for key, project in ((OAI_KEY, ""), (other, "proj_personal")):
        headers = {"authorization": f"Bearer {key}"} | ({"x-sim-project": project}
                                                        if project else {})
        reply = client.post("/v1/chat/completions", headers=headers, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200
    client.post("/v1/chat/completions", json={  # the demo gateway sends no key
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    start, end = _today()
    rows = _rows(_oai(client, "/v1/organization/usage/completions", [
        ("start_time", str(start)), ("end_time", str(end)), ("group_by", "api_key_id"),
        ("group_by", "project_id")]))
    assert sorted((r["api_key_id"], r["project_id"], r["num_model_requests"]) for r in rows) == \
        sorted([(provider_key_id("openai", OAI_KEY), "proj_meterline_sim", 1),
                (provider_key_id("openai", other), "proj_personal", 1),
                (provider_key_id("openai", ""), "proj_meterline_sim", 1)])
    assert provider_key_id("openai", "") == "key_" + "e3b0c44298fc1c14"
    projects = _oai(client, "/v1/organization/projects")
    assert sorted(p["id"] for p in projects["data"]) == ["proj_meterline_sim", "proj_personal"]
    listed: dict[str, tuple[str, str, str]] = {}
    for project in ("proj_meterline_sim", "proj_personal"):
        page = _oai(client, f"/v1/organization/projects/{project}/api_keys")
        assert page["object"] == "list" and page["has_more"] is False
        listed |= {key["id"]: (project, key["redacted_value"], key["object"])
                   for key in page["data"]}
    assert listed == {
        provider_key_id("openai", OAI_KEY): ("proj_meterline_sim", "sk-...0001",
                                             "organization.project.api_key"),
        provider_key_id("openai", ""): ("proj_meterline_sim", "", "organization.project.api_key"),
        provider_key_id("openai", other): ("proj_personal", "sk-...9999",
                                           "organization.project.api_key")}
    assert key_hint(other) == "sk-...9999" and key_hint("") == ""
    assert provider_key_id("anthropic", other).startswith("apikey_")


def test_admin_key_is_required(client: TestClient) -> None:
    query = {"start_time": 0, "end_time": DAY}
    for headers in ({}, {"authorization": f"Bearer {OAI_KEY}"}):
        refused = client.get("/v1/organization/usage/completions", params=query, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
    refused = client.get("/v1/organizations/usage_report/messages",
                         params={"starting_at": "2026-10-01T00:00:00Z"},
                         headers={"x-api-key": ANT_KEY, "anthropic-version": "2023-06-01"})
    assert refused.status_code == 401
    assert refused.json() == {"type": "error", "error": {"type": "authentication_error",
                                                         "message": "invalid x-api-key"}}
    unversioned = client.get("/v1/organizations/api_keys", headers={"x-api-key": ADMIN})
    assert unversioned.status_code == 400
    assert unversioned.json()["error"]["message"] == "anthropic-version: header is required"
    with TestClient(create_provider_app(api_key=OAI_KEY)) as open_client:  # no admin key
        assert open_client.get("/v1/organization/usage/completions",
                               params=query).status_code == 200


@pytest.mark.parametrize(("query", "message"), [
    ({}, "start_time: is required"),
    ({"start_time": "yesterday"}, "start_time: must be a non-negative integer, got 'yesterday'"),
    ({"start_time": DAY, "end_time": DAY}, "the end of the range must be after its start"),
    ({"start_time": 0, "end_time": DAY, "bucket_width": "1w"},
     "bucket_width: must be one of 1d, 1h, got '1w'"),
    ({"start_time": 0, "end_time": DAY, "limit": 32},
     "limit: must be between 1 and 31 for 1d, got 32"),
    ({"start_time": 0, "end_time": DAY, "group_by": "model,colour"},
     "group_by: 'colour' is not one of project_id, user_id, api_key_id, model, batch, "
     "service_tier"),
    ({"start_time": 0, "end_time": DAY, "page": "nonsense"},
     "page: 'nonsense' is not a page cursor of this report"),
])
def test_bad_openai_params_are_refused(client: TestClient, query: dict[str, Any],
                                       message: str) -> None:
    refused = client.get("/v1/organization/usage/completions", params=query,
                         headers={"authorization": f"Bearer {ADMIN}"})
    assert refused.status_code == 400
    assert refused.json() == {"error": {"message": message, "type": "invalid_request_error",
                                        "param": None, "code": None}}


def test_bad_anthropic_params_are_refused(client: TestClient) -> None:
    headers = {"x-api-key": ADMIN, "anthropic-version": "2023-06-01"}
    for path, query, message in (
            ("/v1/organizations/usage_report/messages", {"starting_at": "last week"},
             "starting_at: not an RFC 3339 time: 'last week'"),
            ("/v1/organizations/usage_report/messages", {"starting_at": "2026-10-01T00:00:00"},
             "starting_at: needs a UTC offset (e.g. Z): '2026-10-01T00:00:00'"),
            ("/v1/organizations/cost_report", {"starting_at": "2026-10-01T00:00:00Z",
                                               "ending_at": "2026-10-02T00:00:00Z",
                                               "bucket_width": "1h"},
             "bucket_width: costs are reported per day only (1d)"),
            ("/v1/organizations/cost_report", {"starting_at": "2026-10-01T00:00:00Z",
                                               "group_by[]": "api_key_id"},
             "group_by: 'api_key_id' is not one of workspace_id, description")):
        refused = client.get(path, params=query, headers=headers)
        assert refused.status_code == 400, path
        assert refused.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                             "message": message}}


@pytest.mark.parametrize(("bad", "message"), [
    ({"provider": "azure"}, "calls[1].provider: must be 'openai' or 'anthropic', got 'azure'"),
    ({"surface": "anthropic.messages"},
     "calls[1].surface: 'anthropic.messages' is not a billed openai surface"),
    ({"input_tokens": -1}, "calls[1].input_tokens: must be a non-negative integer, got -1"),
    ({"output_tokens": 1.5}, "calls[1].output_tokens: must be a non-negative integer, got 1.5"),
    ({"at": "2026-10-01 noon"}, "calls[1].at: not an ISO-8601 time: '2026-10-01 noon'"),
    ({"at": "2026-10-01T12:00:00"}, "calls[1].at: needs a UTC offset (e.g. +00:00 or Z)"),
    ({"input_token": 5}, "calls[1]: unknown field(s) input_token"),
])
def test_malformed_served_calls_record_nothing(client: TestClient, book: ServedBook,
                                               bad: dict[str, Any], message: str) -> None:
    good = _call("2026-10-01T12:00:00+00:00", input_tokens=10)
    refused = client.post("/sim/served", json={"calls": [good, {**good, **bad}]})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == f"/sim/served: {message}"
    assert book.keys("openai") == []
    not_json = client.post("/sim/served", content=b"{calls")
    assert not_json.status_code == 400
    assert client.post("/sim/served", json=[good]).json()["error"]["message"] == \
        '/sim/served: the body must be a JSON object {"calls": [...]}'


def test_delete_clears_the_book(client: TestClient, book: ServedBook) -> None:
    client.post("/sim/served", json={"calls": [_call("2026-10-01T12:00:00+00:00")]})
    assert len(book.keys("openai")) == 1
    assert client.delete("/sim/served").status_code == 200
    assert book.keys("openai") == []
    start = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
    page = _oai(client, "/v1/organization/usage/completions",
                [("start_time", str(start)), ("end_time", str(start + DAY))])
    assert page["data"] == [{"object": "bucket", "start_time": start, "end_time": start + DAY,
                             "results": []}]
