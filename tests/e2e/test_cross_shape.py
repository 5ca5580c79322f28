"""Cross-shape serving end to end (issue 20, point 3), through the official SDKs.

An OpenAI SDK client is served by an Anthropic model, and an Anthropic SDK
client by an OpenAI one, whole and streamed, with a tool call round trip each.
The roles run as processes on the real broker and ClickHouse (chdb in the
store). Upstream is a simulated provider of this module's own: providers of
kind ``anthropic`` and ``openai`` point at it, and it serves both paths, so
each kind speaks only its own shape to it. Its billing book says what served
each call and what that cost; the stored event must agree.

What the client sees is checked against what the simulator answers a direct
call in the upstream's own shape (the simulator is deterministic): the same
tokens, mapped between the two usage conventions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest
from starlette.applications import Starlette

from meterline.processors.price_book import PriceBook
from meterline.schemas import ProviderKind, Usage
from meterline.simulator import create_provider_app
from tests.harness import Pipeline, ThreadedServer, provider_bill, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

REQUEST_ID = "x-meterline-request-id"
KINDS: dict[str, ProviderKind] = {"openai": "openai", "anthropic": "anthropic"}
CONFIG = {
    "models": {
        "chat-on-claude": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
        "messages-on-gpt": {"provider": "openai", "model": "gpt-4o-mini"},
        # one target of each shape: the first fails during a fault window
        "any-shape": {"targets": [{"provider": "anthropic", "model": "claude-haiku-4-5"},
                                  {"provider": "openai", "model": "gpt-4.1"}]},
        "any-shape-openai-first": {"targets": [{"provider": "openai", "model": "o4-mini"},
                                               {"provider": "anthropic",
                                                "model": "claude-opus-4-1"}]},
    },
    "gateway": {"retry_budget_min_per_minute": 60},
}
COLUMNS = ("request_id, surface, provider, served_model, status, outcome, error_class, stream, "
           "fallbacks, attempts, input_tokens, output_tokens, cache_read_tokens, "
           "cache_write_5m_tokens, cache_write_1h_tokens, service_tier, cost_usd, received_at")

WEATHER_OPENAI: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
WEATHER_ANTHROPIC: Any = {"name": "get_weather", "description": "The weather in a city.",
                          "input_schema": WEATHER_OPENAI["function"]["parameters"]}
ASK = "What is the weather in Paris?"


@dataclass
class CrossShape:
    """The pipeline, its simulated provider (its billing book), a key and the four clients."""

    pipeline: Pipeline
    simulator_url: str
    simulator: Starlette
    via_openai: openai.OpenAI
    via_anthropic: anthropic.Anthropic
    openai_direct: openai.OpenAI
    anthropic_direct: anthropic.Anthropic

    def billed(self) -> dict[str, tuple[int, Decimal]]:
        """(requests, cost) per model the simulated provider billed so far."""
        return provider_bill(self.simulator)

    def events(self, *request_ids: str) -> dict[str, dict[str, str]]:
        """The stored events of ``request_ids``, once the store has them all."""
        listed = ", ".join(f"'{request_id}'" for request_id in request_ids)
        query = f"SELECT {COLUMNS} FROM events FINAL WHERE request_id IN ({listed})"
        rows = wait_until(lambda: len(found := self.pipeline.sql(query)) == len(request_ids)
                          and found, 120, message=f"events {request_ids}")
        names = [name.strip() for name in COLUMNS.split(",")]
        return {row[0]: dict(zip(names, row, strict=True)) for row in rows}


@pytest.fixture(scope="module")
def cross(tmp_path_factory: pytest.TempPathFactory, broker: str) -> Iterator[CrossShape]:
    app = create_provider_app()
    server = ThreadedServer(app).start()
    pipeline = Pipeline(tmp_path_factory.mktemp("cross"), broker, server.url, CONFIG).start()
    try:
        key = pipeline.mint_key("alice", "platform", repo="acme/api")
        yield CrossShape(
            pipeline, server.url, app,
            openai.OpenAI(base_url=pipeline.gateway_url + "/v1", api_key=key, max_retries=0),
            anthropic.Anthropic(base_url=pipeline.gateway_url, api_key=key, max_retries=0),
            openai.OpenAI(base_url=server.url + "/v1", api_key="sk-direct", max_retries=0),
            anthropic.Anthropic(base_url=server.url, api_key="sk-direct", max_retries=0))
    finally:
        pipeline.stop()
        server.stop()


def usage_of(row: dict[str, str]) -> Usage:
    return Usage(input_tokens=int(row["input_tokens"]), output_tokens=int(row["output_tokens"]),
                 cache_read_tokens=int(row["cache_read_tokens"]),
                 cache_write_5m_tokens=int(row["cache_write_5m_tokens"]),
                 cache_write_1h_tokens=int(row["cache_write_1h_tokens"]),
                 source="provider", service_tier=row["service_tier"])


def assert_served(row: dict[str, str], provider: str, model: str, stream: bool) -> Decimal:
    """The event names what served it and costs that model's price for its usage."""
    assert (row["provider"], row["served_model"], row["status"], row["outcome"],
            row["stream"]) == (provider, model, "200", "ok", str(stream).lower()), row
    at = datetime.fromisoformat(row["received_at"]).replace(tzinfo=UTC)
    quote = PriceBook([], KINDS).quote(provider, model, usage_of(row), at)
    assert quote is not None and Decimal(row["cost_usd"]) == quote.cost_usd > 0, row
    return quote.cost_usd


def assert_four_served(cross: CrossShape, ids: list[str], surface: str, provider: str,
                       model: str) -> tuple[dict[str, dict[str, str]], list[Decimal]]:
    """The events of four calls (``ids``: two whole, then two streamed), each on
    ``surface`` and served by ``model``; with each one's cost."""
    rows = cross.events(*ids)
    costs = [assert_served(rows[request_id], provider, model, stream)
             for request_id, stream in zip(ids, (False, False, True, True), strict=True)]
    assert {rows[request_id]["surface"] for request_id in ids} == {surface}
    return rows, costs


def billed_since(before: dict[str, tuple[int, Decimal]], after: dict[str, tuple[int, Decimal]],
                 model: str) -> tuple[int, Decimal]:
    (requests, cost), (earlier, earlier_cost) = (after.get(model, (0, Decimal(0))),
                                                 before.get(model, (0, Decimal(0))))
    return requests - earlier, cost - earlier_cost


def test_openai_sdk_served_by_an_anthropic_model(cross: CrossShape) -> None:
    before = cross.billed()
    chat = cross.via_openai.chat.completions
    ask: list[Any] = [{"role": "system", "content": "Answer briefly."},
                      {"role": "user", "content": ASK}]

    # a tool call, whole: the Anthropic tool_use block as an OpenAI tool call
    called = chat.with_raw_response.create(model="chat-on-claude", messages=ask,
                                           tools=[WEATHER_OPENAI], tool_choice="required")
    completion = called.parse()
    choice = completion.choices[0]
    assert (completion.model, choice.finish_reason) == ("claude-sonnet-4-5", "tool_calls")
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city"}
    # the same call made directly in Anthropic's shape (under another model name, so the
    # book keeps it apart; the simulator answers alike): the usage is the same tokens
    direct = cross.anthropic_direct.messages.create(
        model="direct-check", max_tokens=4096, system=[{"type": "text",
                                                             "text": "Answer briefly."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": ASK}]}],
        tools=[WEATHER_ANTHROPIC], tool_choice={"type": "any"})
    assert direct.content[0].type == "tool_use" and direct.content[0].id == call.id
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        direct.usage.input_tokens, direct.usage.output_tokens)

    # the round trip: the tool's result goes back as a tool message, the answer is text
    round_trip: list[Any] = [*ask, choice.message.model_dump(exclude_none=True), {
        "role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C."}]
    answered = chat.with_raw_response.create(model="chat-on-claude", tools=[WEATHER_OPENAI],
                                             messages=round_trip)
    final = answered.parse().choices[0]
    assert final.finish_reason == "stop" and final.message.content

    # streamed, usage asked for: text deltas, then the usage chunk
    with chat.with_streaming_response.create(
            model="chat-on-claude", messages=ask, stream=True,
            stream_options={"include_usage": True}) as response:
        streamed_id = response.headers[REQUEST_ID]
        chunks: list[Any] = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0

    # streamed with a tool call, assembled by the SDK's own stream helper; no usage asked
    with chat.with_streaming_response.create(model="chat-on-claude", messages=ask, stream=True,
                                             tools=[WEATHER_OPENAI],
                                             tool_choice="required") as response:
        tool_stream_id = response.headers[REQUEST_ID]
        tool_chunks: list[Any] = list(response.parse())
    assert all(chunk.usage is None for chunk in tool_chunks)
    with chat.stream(model="chat-on-claude", messages=ask, tools=[WEATHER_OPENAI],
                     tool_choice="required") as stream:
        assembled = stream.get_final_completion().choices[0]
    assert assembled.finish_reason == "tool_calls" and assembled.message.tool_calls
    assert assembled.message.tool_calls[0].function.arguments == call.function.arguments

    ids = [called.headers[REQUEST_ID], answered.headers[REQUEST_ID], streamed_id,
           tool_stream_id]
    rows, costs = assert_four_served(cross, ids, "openai.chat", "anthropic", "claude-sonnet-4-5")
    tool_row = rows[called.headers[REQUEST_ID]]
    assert (int(tool_row["input_tokens"]), int(tool_row["output_tokens"])) == (
        direct.usage.input_tokens, direct.usage.output_tokens)
    # billed once each by the provider that served, as the ledger says; the SDK helper's
    # stream is the tool stream's twin, at the same cost
    assert billed_since(before, cross.billed(), "claude-sonnet-4-5") == (
        len(ids) + 1, sum(costs, Decimal(0)) + costs[3])


def test_anthropic_sdk_served_by_an_openai_model(cross: CrossShape) -> None:
    before = cross.billed()
    messages = cross.via_anthropic.messages
    ask: list[Any] = [{"role": "user", "content": ASK}]

    called = messages.with_raw_response.create(model="messages-on-gpt", max_tokens=256,
                                               system="Answer briefly.", messages=ask,
                                               tools=[WEATHER_ANTHROPIC],
                                               tool_choice={"type": "any"})
    message = called.parse()
    assert (message.model, message.stop_reason) == ("gpt-4o-mini", "tool_use")
    use = message.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and set(use.input) == {"city"}
    direct = cross.openai_direct.chat.completions.create(
        model="direct-check", max_completion_tokens=256, tools=[WEATHER_OPENAI],
        tool_choice="required",
        messages=[{"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]},
                  {"role": "user", "content": ASK}])
    assert direct.usage is not None and direct.choices[0].message.tool_calls
    assert use.id == direct.choices[0].message.tool_calls[0].id
    assert (message.usage.input_tokens, message.usage.output_tokens,
            message.usage.cache_read_input_tokens) == (
        direct.usage.prompt_tokens, direct.usage.completion_tokens, 0)

    round_trip: list[Any] = [*ask, {"role": "assistant", "content": [use.model_dump()]}, {
        "role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                     "content": "Sunny, 24 C."}]}]
    answered = messages.with_raw_response.create(model="messages-on-gpt", max_tokens=256,
                                                 tools=[WEATHER_ANTHROPIC], messages=round_trip)
    final = answered.parse()
    assert final.stop_reason == "end_turn" and final.content[0].type == "text"

    # streamed, through the SDK's accumulating helper: text, then the usage in message_delta
    with messages.stream(model="messages-on-gpt", max_tokens=256, messages=ask) as stream:
        streamed = stream.get_final_message()
        streamed_id = stream.response.headers[REQUEST_ID]
    assert streamed.stop_reason == "end_turn" and streamed.content[0].type == "text"
    assert streamed.content[0].text and streamed.usage.output_tokens > 0
    assert streamed.usage.input_tokens > 0

    with messages.stream(model="messages-on-gpt", max_tokens=256, system="Answer briefly.",
                         messages=ask, tools=[WEATHER_ANTHROPIC],
                         tool_choice={"type": "any"}) as stream:
        events = [event.type for event in stream]
        tool_message = stream.get_final_message()
        tool_stream_id = stream.response.headers[REQUEST_ID]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "input_json" in events and tool_message.stop_reason == "tool_use"
    streamed_use = tool_message.content[0]
    assert streamed_use.type == "tool_use" and streamed_use.input == use.input

    ids = [called.headers[REQUEST_ID], answered.headers[REQUEST_ID], streamed_id,
           tool_stream_id]
    rows, costs = assert_four_served(cross, ids, "anthropic.messages", "openai", "gpt-4o-mini")
    streamed_row = rows[streamed_id]
    assert (int(streamed_row["input_tokens"]), int(streamed_row["output_tokens"])) == (
        streamed.usage.input_tokens, streamed.usage.output_tokens)
    assert billed_since(before, cross.billed(), "gpt-4o-mini") == (len(ids),
                                                                   sum(costs, Decimal(0)))


def test_untranslatable_fields_are_refused_before_leaving_and_recorded(
        cross: CrossShape) -> None:
    before = cross.billed()
    with pytest.raises(openai.BadRequestError) as openai_refusal:
        cross.via_openai.chat.completions.create(model="chat-on-claude", n=2,
                                             messages=[{"role": "user", "content": ASK}])
    error = openai_refusal.value
    assert error.code == "untranslatable_field" and error.param == "n"
    with pytest.raises(anthropic.BadRequestError) as anthropic_refusal:
        cross.via_anthropic.messages.create(model="messages-on-gpt", max_tokens=2048,
                                        thinking={"type": "enabled", "budget_tokens": 1024},
                                        messages=[{"role": "user", "content": ASK}])
    body = anthropic_refusal.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert "`thinking`" in body["error"]["message"]
    rows = cross.events(openai_refusal.value.response.headers[REQUEST_ID],
                        anthropic_refusal.value.response.headers[REQUEST_ID])
    assert sorted((row["status"], row["outcome"], row["error_class"], row["cost_usd"])
                  for row in rows.values()) == [
        ("400", "gateway_error", "Untranslatable:n", "0"),
        ("400", "gateway_error", "Untranslatable:thinking", "0")]
    assert cross.billed() == before  # nothing reached the provider


def test_upstream_errors_reach_the_client_in_its_own_format(cross: CrossShape) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        cross.via_openai.chat.completions.create(model="chat-on-claude", extra_headers={
            "x-sim-status": "429"}, messages=[{"role": "user", "content": ASK}])
    assert limited.value.response.headers["retry-after"] == "1"
    assert isinstance(limited.value.body, dict) and limited.value.body["type"] == "requests"
    with pytest.raises(anthropic.InternalServerError) as failed:
        cross.via_anthropic.messages.create(model="messages-on-gpt", max_tokens=64, extra_headers={
            "x-sim-status": "503"}, messages=[{"role": "user", "content": ASK}])
    body = failed.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"
    rows = cross.events(limited.value.response.headers[REQUEST_ID],
                        failed.value.response.headers[REQUEST_ID])
    assert sorted((row["provider"], row["status"], row["error_class"], row["cost_usd"])
                  for row in rows.values()) == [("anthropic", "429", "http_429", "0"),
                                                ("openai", "503", "http_503", "0")]


def test_a_fallback_chain_crosses_shapes(cross: CrossShape) -> None:
    """Each alias has a target of each shape; the first fails, the other serves."""
    before = cross.billed()
    answer = httpx.post(cross.simulator_url + "/sim/faults", timeout=10, json={
        "status": 529, "seconds": 60, "models": ["claude-haiku-4-5", "o4-mini"]})
    assert answer.status_code == 201, answer.text
    try:
        # Anthropic caller: its own-shape target fails, the OpenAI one serves, streamed
        with cross.via_anthropic.messages.stream(model="any-shape", max_tokens=128,
                                             messages=[{"role": "user", "content": ASK}]
                                             ) as stream:
            rescued = stream.get_final_message()
            anthropic_id = stream.response.headers[REQUEST_ID]
        # OpenAI caller: its own-shape target fails, the Anthropic one serves, with a tool
        called = cross.via_openai.chat.completions.with_raw_response.create(
            model="any-shape-openai-first", tools=[WEATHER_OPENAI], tool_choice="required",
            messages=[{"role": "user", "content": ASK}])
    finally:
        assert httpx.delete(cross.simulator_url + "/sim/faults", timeout=10).status_code == 204
    assert rescued.model == "gpt-4.1" and rescued.content[0].type == "text"
    completion = called.parse()
    assert completion.model == "claude-opus-4-1"
    assert completion.choices[0].finish_reason == "tool_calls"
    openai_id = called.headers[REQUEST_ID]

    rows = cross.events(anthropic_id, openai_id)
    assert_served(rows[anthropic_id], "openai", "gpt-4.1", True)
    assert_served(rows[openai_id], "anthropic", "claude-opus-4-1", False)
    assert [(a["provider"], a["model"], a["status"], a["error_class"])
            for a in json.loads(rows[anthropic_id]["attempts"])] == [
        ("anthropic", "claude-haiku-4-5", 529, "http_529")]
    assert [(a["provider"], a["model"], a["status"], a["error_class"])
            for a in json.loads(rows[openai_id]["attempts"])] == [
        ("openai", "o4-mini", 529, "http_529")]
    after = cross.billed()
    for row in rows.values():  # each call billed once, on the target that served it
        assert billed_since(before, after, row["served_model"]) == (1, Decimal(row["cost_usd"]))
    assert billed_since(before, after, "claude-haiku-4-5")[0] == 0
    assert billed_since(before, after, "o4-mini")[0] == 0


def test_an_answer_the_caller_cannot_carry_is_a_502_that_keeps_its_cost(
        cross: CrossShape) -> None:
    """Tool arguments that are not JSON cannot become a tool_use block; the call was billed."""
    before = cross.billed()
    with pytest.raises(anthropic.InternalServerError) as failed:
        cross.via_anthropic.messages.create(
            model="messages-on-gpt", max_tokens=64, tools=[WEATHER_ANTHROPIC],
            tool_choice={"type": "any"}, extra_headers={"x-sim-broken-tool-json": "1"},
            messages=[{"role": "user", "content": ASK}])
    assert failed.value.status_code == 502
    body = failed.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"
    assert "not a JSON object" in body["error"]["message"]
    row = cross.events(failed.value.response.headers[REQUEST_ID]).popitem()[1]
    assert (row["provider"], row["served_model"], row["status"], row["outcome"],
            row["error_class"]) == ("openai", "gpt-4o-mini", "502", "upstream_error",
                                    "UntranslatableAnswer")
    at = datetime.fromisoformat(row["received_at"]).replace(tzinfo=UTC)
    quote = PriceBook([], KINDS).quote("openai", "gpt-4o-mini", usage_of(row), at)
    assert quote is not None and Decimal(row["cost_usd"]) == quote.cost_usd > 0
    assert billed_since(before, cross.billed(), "gpt-4o-mini") == (1, quote.cost_usd)
