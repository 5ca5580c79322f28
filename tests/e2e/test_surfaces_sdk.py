"""Issue 3's bar: every surface, through the official SDKs, streamed and not.

Each call is made twice with the same SDK: directly against the simulated
provider and through the gateway. The bytes the client received must be
identical, the SDK must parse them, and the envelope must reach ClickHouse
with the usage the provider reported (or, for a chat stream where the client
did not ask for usage, the usage the gateway asked for on its behalf).
One pipeline (store, processors, gateway subprocesses) serves the module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.harness import Pipeline, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

REQUEST_ID = "x-meterline-request-id"
COLUMNS = ("surface", "stream", "status", "outcome", "input_tokens", "output_tokens",
           "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
           "reasoning_tokens", "usage_source", "tool", "user", "team", "repo", "repo_source",
           "served_model")


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory, broker: str,
         simulator: str) -> Iterator[Pipeline]:
    running = Pipeline(Path(tmp_path_factory.mktemp("surfaces")), broker, simulator).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def key(pipe: Pipeline) -> str:
    return pipe.mint_key("alice", "platform", repo="acme/api")


@pytest.fixture(scope="module")
def clients(pipe: Pipeline, key: str, simulator: str) -> dict[str, Any]:
    return {
        "openai": openai.OpenAI(base_url=pipe.gateway_url + "/v1", api_key=key, max_retries=0),
        "openai_direct": openai.OpenAI(base_url=simulator + "/v1", api_key="sk-x", max_retries=0),
        "anthropic": anthropic.Anthropic(base_url=pipe.gateway_url, api_key=key, max_retries=0),
        "anthropic_direct": anthropic.Anthropic(base_url=simulator, api_key="sk-x", max_retries=0),
    }


def row(pipe: Pipeline, request_id: str) -> dict[str, str]:
    query = f"SELECT {', '.join(COLUMNS)} FROM events WHERE request_id = '{request_id}'"
    found = wait_until(lambda: pipe.sql(query), 150, message=f"row for {request_id}")
    return dict(zip(COLUMNS, found[0], strict=True))


def raw_call(create: Callable[..., Any], **kwargs: Any) -> tuple[bytes, Any, str]:
    """(body bytes, SDK-parsed result, gateway request id) of one call."""
    with create(**kwargs) as response:
        body: bytes = response.read()
        parsed = response.parse()
        if kwargs.get("stream"):
            parsed = list(parsed)
        return body, parsed, response.headers.get(REQUEST_ID, "")


def both(clients: dict[str, Any], sdk: str, resource: Callable[[Any], Any],
         **kwargs: Any) -> tuple[bytes, Any, str]:
    direct, _, _ = raw_call(resource(clients[sdk + "_direct"]).with_streaming_response.create,
                            **kwargs)
    proxied, parsed, request_id = raw_call(resource(clients[sdk]).with_streaming_response.create,
                                           **kwargs)
    assert proxied == direct, "the gateway changed what the client received"
    assert request_id
    return proxied, parsed, request_id


def sse_json(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in body.split(b"\n")
            if line.startswith(b"data: {")]


def expect(found: dict[str, str], **values: object) -> None:
    assert {name: found[name] for name in values} == {k: str(v).lower() if isinstance(v, bool)
                                                      else str(v) for k, v in values.items()}


MESSAGES = [{"role": "user", "content": "Summarise yesterday's deploys."}]


def test_chat_completions_whole_and_streamed(pipe: Pipeline, clients: dict[str, Any]) -> None:
    body, parsed, whole_id = both(clients, "openai", lambda c: c.chat.completions,
                                  model="gpt-4o-mini", messages=MESSAGES)
    assert parsed.choices[0].message.content
    usage = orjson.loads(body)["usage"]
    _, chunks, plain_id = both(clients, "openai", lambda c: c.chat.completions,
                               model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert all(chunk.usage is None for chunk in chunks)  # not asked for, not received
    body, chunks, usage_id = both(clients, "openai", lambda c: c.chat.completions,
                                  model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                  stream_options={"include_usage": True})
    assert chunks[-1].usage.prompt_tokens == usage["prompt_tokens"]
    for request_id, stream in ((whole_id, False), (plain_id, True), (usage_id, True)):
        expect(row(pipe, request_id), surface="openai.chat", stream=stream, status=200,
               outcome="ok", input_tokens=usage["prompt_tokens"],
               output_tokens=usage["completion_tokens"], usage_source="provider",
               tool="openai-python", user="alice", team="platform", repo="acme/api",
               repo_source="key_default", served_model="gpt-4o-mini")


def test_responses_whole_and_streamed_with_reasoning(pipe: Pipeline,
                                                     clients: dict[str, Any]) -> None:
    body, parsed, whole_id = both(clients, "openai", lambda c: c.responses, model="o4-mini",
                                  input="Write a release note.", instructions="Be brief.")
    assert parsed.output_text
    usage = orjson.loads(body)["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] > 0
    body, events, stream_id = both(clients, "openai", lambda c: c.responses, model="o4-mini",
                                   input="Write a release note.", instructions="Be brief.",
                                   stream=True)
    assert events[-1].type == "response.completed"
    for request_id, stream in ((whole_id, False), (stream_id, True)):
        expect(row(pipe, request_id), surface="openai.responses", stream=stream,
               input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"],
               reasoning_tokens=usage["output_tokens_details"]["reasoning_tokens"],
               usage_source="provider", served_model="o4-mini")


def test_embeddings_and_models(pipe: Pipeline, clients: dict[str, Any]) -> None:
    body, parsed, embed_id = both(clients, "openai", lambda c: c.embeddings,
                                  model="text-embedding-3-small", input=["alpha", "beta gamma"])
    assert len(parsed.data) == 2 and len(parsed.data[0].embedding) == 16
    usage = orjson.loads(body)["usage"]
    listed = clients["openai"].models.with_raw_response.list()
    direct = clients["openai_direct"].models.with_raw_response.list()
    assert listed.content == direct.content
    assert "gpt-4o-mini" in [model.id for model in listed.parse()]
    expect(row(pipe, embed_id), surface="openai.embeddings", stream=False,
           input_tokens=usage["prompt_tokens"], output_tokens=0, usage_source="provider")
    expect(row(pipe, listed.headers[REQUEST_ID]), surface="openai.models", status=200,
           input_tokens=0, usage_source="provider")


def test_anthropic_messages_whole_and_streamed(pipe: Pipeline, clients: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"model": "claude-opus-4-6", "max_tokens": 128,
                              "messages": [{"role": "user", "content": "Explain the flaky test."}]}
    body, parsed, whole_id = both(clients, "anthropic", lambda c: c.messages, **kwargs)
    assert parsed.content[0].text
    usage = orjson.loads(body)["usage"]
    body, events, stream_id = both(clients, "anthropic", lambda c: c.messages, stream=True,
                                   **kwargs)
    assert [event.type for event in events][-1] == "message_stop"
    for request_id, stream in ((whole_id, False), (stream_id, True)):
        expect(row(pipe, request_id), surface="anthropic.messages", stream=stream,
               input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"],
               usage_source="provider", tool="anthropic-python", served_model="claude-opus-4-6")


def test_anthropic_prompt_caching_5m_and_1h_and_reads(pipe: Pipeline,
                                                      clients: dict[str, Any]) -> None:
    gateway = clients["anthropic"]

    def cached_call(ttl: str, text: str, stream: bool) -> tuple[dict[str, Any], str]:
        control: dict[str, Any] = {"type": "ephemeral", "ttl": ttl}
        with gateway.messages.with_streaming_response.create(
                model="claude-opus-4-6", max_tokens=64, stream=stream,
                system=[{"type": "text", "text": text, "cache_control": control}],
                messages=[{"role": "user", "content": "Go."}],
                extra_headers={"x-meterline-repo": "acme/infra"}) as response:
            body = response.read()
            request_id = response.headers[REQUEST_ID]
        if stream:
            events = sse_json(body)
            usage = {**events[0]["message"]["usage"],
                     **next(e for e in events if e["type"] == "message_delta")["usage"]}
            return usage, request_id
        return dict(orjson.loads(body)["usage"]), request_id

    context = "You maintain the payments service. " * 40
    written_1h, write_1h_id = cached_call("1h", context, stream=True)
    read, read_id = cached_call("1h", context, stream=False)
    written_5m, write_5m_id = cached_call("5m", "Another context. " * 30, stream=False)
    assert written_1h["cache_creation"]["ephemeral_1h_input_tokens"] > 0
    expect(row(pipe, write_1h_id), cache_write_1h_tokens=written_1h["cache_creation"][
        "ephemeral_1h_input_tokens"], cache_write_5m_tokens=0, cache_read_tokens=0,
        output_tokens=written_1h["output_tokens"], repo="acme/infra", repo_source="header")
    expect(row(pipe, read_id), cache_read_tokens=read["cache_read_input_tokens"],
           cache_write_1h_tokens=0, input_tokens=read["input_tokens"])
    expect(row(pipe, write_5m_id), cache_write_5m_tokens=written_5m["cache_creation"][
        "ephemeral_5m_input_tokens"], cache_write_1h_tokens=0)


def test_count_tokens_and_served_equals_rows(pipe: Pipeline, clients: dict[str, Any]) -> None:
    request = {"model": "claude-opus-4-6",
               "messages": [{"role": "user", "content": "How many tokens is this?"}]}
    counted = clients["anthropic"].messages.with_raw_response.count_tokens(**request)
    direct = clients["anthropic_direct"].messages.with_raw_response.count_tokens(**request)
    assert counted.http_response.content == direct.http_response.content and counted.parse().input_tokens > 0
    expect(row(pipe, counted.headers[REQUEST_ID]), surface="anthropic.count_tokens",
           input_tokens=0, output_tokens=0, usage_source="provider")
    # served = envelopes = rows: every call this module made through the gateway is a row
    served = pipe.scalar("SELECT count() FROM events")
    gateway_calls = 3 + 2 + 2 + 2 + 3 + 1
    assert int(served) == gateway_calls
