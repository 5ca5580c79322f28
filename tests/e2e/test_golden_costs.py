"""Golden costs: the exact Decimal a call costs, from the provider's own usage to the row.

Each call goes through the gateway to the simulated provider, then through the
broker, the worker and the store. The test reads the usage the provider
reported in the bytes the client received (body, or stream events). It prices
that usage by hand at the published per-million-token rates written below
(Anthropic's and OpenAI's price pages, as genai-prices carries them) and
asserts ``events.cost_usd`` equals that figure to the last digit.

The cases are the usage-parsing defects other gateways shipped
(docs/reconciliation.md has the list and the issue threads):

- Anthropic cache reads billed as full input on streams; cache tokens dropped;
  1-hour cache writes priced at the 5-minute rate; cache-creation tokens
  counted twice. Anthropic's ``input_tokens`` excludes the cache counts.
- OpenAI's ``cached_tokens`` sit *inside* ``prompt_tokens`` (billed at the
  cached rate, not on top); reasoning tokens sit inside ``completion_tokens``.
- Codex's Responses API reports ``input_tokens`` / ``output_tokens`` with
  the same inclusions under other names, and streams usage only in
  ``response.completed``.
- ``count_tokens`` costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.harness import Pipeline, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

MTOK = Decimal(1_000_000)
#: USD per million tokens: (input, cache read, 5-minute cache write, 1-hour cache write, output)
ANTHROPIC = {"claude-opus-4-1": (Decimal("15"), Decimal("1.5"), Decimal("18.75"),
                                 Decimal("30"), Decimal("75"))}
#: USD per million tokens: (input, cached input, output); reasoning is billed as output
OPENAI = {"gpt-4o": (Decimal("2.5"), Decimal("1.25"), Decimal("10")),
          "o4-mini": (Decimal("1.1"), Decimal("0.275"), Decimal("4.4")),
          "gpt-5-codex": (Decimal("1.25"), Decimal("0.125"), Decimal("10"))}
#: The same, by service tier, from the date each took effect (OpenAI's pricing page, as
#: genai-prices carries it: flex and priority from 2026-10-12).
OPENAI_TIERS = {("gpt-4o", "priority"): (Decimal("4.25"), Decimal("2.125"), Decimal("17")),
                ("o4-mini", "flex"): (Decimal("0.55"), Decimal("0.138"), Decimal("2.2")),
                ("o4-mini", "priority"): (Decimal("2"), Decimal("0.5"), Decimal("8"))}

#: Long enough to be cached (OpenAI caches prompts over 1,024 tokens).
LONG = " ".join(f"clause {n} of the shared system prompt, repeated for the cache." for n in range(300))


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory, broker: str,
         simulator: str) -> Iterator[Pipeline]:
    running = Pipeline(Path(tmp_path_factory.mktemp("golden")), broker, simulator).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(pipe: Pipeline) -> Iterator[httpx.Client]:
    key = pipe.mint_key("alice", "platform", repo="acme/api")
    with httpx.Client(base_url=pipe.gateway_url, timeout=30,
                      headers={"authorization": f"Bearer {key}", "x-api-key": key,
                               "anthropic-version": "2023-06-01"}) as http:
        yield http


def stored_cost(pipe: Pipeline, request_id: str) -> Decimal:
    query = f"SELECT toString(cost_usd) FROM events FINAL WHERE request_id = '{request_id}'"
    found = wait_until(lambda: pipe.sql(query), 150, message=f"row for {request_id}")
    return Decimal(found[0][0])


def sse_data(body: bytes) -> list[dict[str, Any]]:
    events = []
    for line in body.splitlines():
        if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
            events.append(orjson.loads(line[5:].strip()))
    return events


def call(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[bytes, str]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.content, response.headers["x-meterline-request-id"]


def anthropic_usage(body: bytes, stream: bool) -> dict[str, Any]:
    """Anthropic's usage: ``message_start``'s counts, output from the last ``message_delta``."""
    if not stream:
        usage: dict[str, Any] = orjson.loads(body)["usage"]
        return usage
    events = sse_data(body)
    usage = dict(next(e["message"]["usage"] for e in events if e["type"] == "message_start"))
    usage["output_tokens"] = [e for e in events if e["type"] == "message_delta"][-1][
        "usage"]["output_tokens"]
    return usage


def anthropic_cost(model: str, usage: dict[str, Any]) -> Decimal:
    rate_in, rate_read, rate_5m, rate_1h, rate_out = ANTHROPIC[model]
    creation = usage.get("cache_creation") or {}
    write_5m = int(creation.get("ephemeral_5m_input_tokens", 0))
    write_1h = int(creation.get("ephemeral_1h_input_tokens", 0))
    assert write_5m + write_1h == usage.get("cache_creation_input_tokens", 0)  # one count, split
    uncached, read = int(usage["input_tokens"]), int(usage.get("cache_read_input_tokens", 0))
    output = int(usage["output_tokens"])
    return (uncached * rate_in + read * rate_read + write_5m * rate_5m + write_1h * rate_1h
            + output * rate_out) / MTOK


def openai_cost(model: str, prompt: int, cached: int, completion: int,
                tier: str = "default") -> Decimal:
    rate_in, rate_cached, rate_out = OPENAI_TIERS.get((model, tier)) or OPENAI[model]
    return ((prompt - cached) * rate_in + cached * rate_cached + completion * rate_out) / MTOK


def cached_system(case: str, ttl: str | None) -> list[dict[str, Any]]:
    marker: dict[str, Any] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": f"{case} {LONG}", "cache_control": marker}]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("ttl", [None, "1h"], ids=["5m-write", "1h-write"])
def test_anthropic_cache_writes_then_reads(pipe: Pipeline, client: httpx.Client, stream: bool,
                                           ttl: str | None) -> None:
    """First call writes the cache (5-minute or 1-hour rate), the repeat reads it."""
    model = "claude-opus-4-1"
    system = cached_system(f"ttl={ttl} stream={stream}", ttl)  # each case its own cache entry
    body = {"model": model, "max_tokens": 64, "stream": stream, "system": system,
            "messages": [{"role": "user", "content": "Summarise the clauses."}]}
    costs = []
    for attempt in ("write", "read"):
        raw, request_id = call(client, "/v1/messages", body)
        usage = anthropic_usage(raw, stream)
        if attempt == "write":
            written = (usage["cache_creation"]["ephemeral_1h_input_tokens"] if ttl
                       else usage["cache_creation"]["ephemeral_5m_input_tokens"])
            assert written > 0 and usage["cache_read_input_tokens"] == 0
        else:
            assert usage["cache_read_input_tokens"] > 0
            assert usage["cache_creation_input_tokens"] == 0
        expected = anthropic_cost(model, usage)
        assert stored_cost(pipe, request_id) == expected, (attempt, usage)
        costs.append(expected)
    assert costs[1] < costs[0]  # a read is cheaper than the write


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", ["gpt-4o", "o4-mini"])
def test_openai_cached_and_reasoning_tokens_are_inside_the_totals(
        pipe: Pipeline, client: httpx.Client, stream: bool, model: str) -> None:
    body: dict[str, Any] = {"model": model, "stream": stream, "messages": [
        {"role": "system", "content": f"{model} stream={stream} {LONG}"},
        {"role": "user", "content": "Summarise the clauses."}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    for attempt in ("cold", "cached"):
        raw, request_id = call(client, "/v1/chat/completions", body)
        usage = (sse_data(raw)[-1] if stream else orjson.loads(raw))["usage"]
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
        assert (cached > 0) == (attempt == "cached")
        assert (reasoning > 0) == (model == "o4-mini")
        assert reasoning <= usage["completion_tokens"]
        expected = openai_cost(model, usage["prompt_tokens"], cached, usage["completion_tokens"])
        assert stored_cost(pipe, request_id) == expected, (attempt, usage)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_codex_responses_usage(pipe: Pipeline, client: httpx.Client, stream: bool) -> None:
    model = "gpt-5-codex"
    body = {"model": model, "stream": stream, "instructions": f"stream={stream} {LONG}",
            "input": "Refactor the parser."}
    for attempt in ("cold", "cached"):
        raw, request_id = call(client, "/v1/responses", body)
        response = (next(e["response"] for e in sse_data(raw) if e["type"] == "response.completed")
                    if stream else orjson.loads(raw))
        usage = response["usage"]
        cached = usage["input_tokens_details"]["cached_tokens"]
        assert (cached > 0) == (attempt == "cached")
        assert usage["output_tokens_details"]["reasoning_tokens"] <= usage["output_tokens"]
        expected = openai_cost(model, usage["input_tokens"], cached, usage["output_tokens"])
        assert stored_cost(pipe, request_id) == expected, (attempt, usage)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("model", "tier"), [("gpt-4o", "priority"), ("o4-mini", "flex"),
                                             ("o4-mini", "priority"), ("gpt-4o", "flex")])
def test_a_service_tier_is_priced_at_its_own_rate(pipe: Pipeline, client: httpx.Client,
                                                  stream: bool, model: str, tier: str) -> None:
    """Priority costs 1.7x the default, flex half; a tier without its own price (gpt-4o
    flex) is the default price. The tier is what the response says it ran at."""
    body: dict[str, Any] = {"model": model, "stream": stream, "service_tier": tier,
                            "messages": [{"role": "user", "content": f"{tier} {model} {stream}"}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    raw, request_id = call(client, "/v1/chat/completions", body)
    reply = sse_data(raw)[-1] if stream else orjson.loads(raw)
    assert reply["service_tier"] == tier
    usage = reply["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    expected = openai_cost(model, usage["prompt_tokens"], cached, usage["completion_tokens"],
                           tier)
    assert stored_cost(pipe, request_id) == expected, usage
    assert pipe.sql(f"SELECT service_tier FROM events WHERE request_id = '{request_id}'") == [
        [tier]]


def test_count_tokens_costs_nothing(pipe: Pipeline, client: httpx.Client) -> None:
    raw, request_id = call(client, "/v1/messages/count_tokens", {
        "model": "claude-opus-4-1", "messages": [{"role": "user", "content": LONG}]})
    assert orjson.loads(raw)["input_tokens"] > 0
    assert stored_cost(pipe, request_id) == Decimal(0)
