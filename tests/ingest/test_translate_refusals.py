"""What cannot be translated is refused, naming the field, before anything is sent.

Each refusal is an ``Untranslatable`` (400, ``invalid_request_error``, code
``untranslatable_field``, ``param`` the field), and the envelope records it as
``Untranslatable:<field>`` (``error_class``). Fields set to the value that asks
for nothing, or to null, pass. The gateway's own recording of a refusal is
checked end to end in tests/e2e/test_cross_shape.py.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from meterline.ingest.errors import Untranslatable
from meterline.ingest.translate import request_body
from meterline.ingest.translate.requests import chat_to_messages, messages_to_chat

ASK = [{"role": "user", "content": "Hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def refused_field(translate: Any, payload: dict[str, Any]) -> str:
    with pytest.raises(Untranslatable) as refused:
        translate(payload)
    return refused.value.field


def to_messages(payload: dict[str, Any]) -> Any:
    return chat_to_messages(payload, "claude-sonnet-4-5")


def to_chat(payload: dict[str, Any]) -> Any:
    return messages_to_chat(payload, "gpt-4o-mini", "openai")


@pytest.mark.parametrize(("extra", "field"), [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"seed": 7}, "seed"),
    ({"temperature": 1.5}, "temperature"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"reasoning_effort": "high"}, "reasoning_effort"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"store": True}, "store"),
    ({"some_vendor_extension": 1}, "some_vendor_extension"),
    ({"tools": [{**TOOL, "function": {**TOOL["function"], "strict": True}}]},  # type: ignore[dict-item]
     "tools[0].function.strict"),
    ({"tools": [{"type": "custom", "custom": {"name": "g"}}]}, "tools[0].type"),
    ({"tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}, "tool_choice"),
])
def test_openai_fields_anthropic_cannot_express_are_refused(extra: dict[str, Any],
                                                            field: str) -> None:
    assert refused_field(to_messages, {"model": "m", "messages": ASK, **extra}) == field


@pytest.mark.parametrize(("messages", "field"), [
    ([*ASK, {"role": "system", "content": "Now be rude."}], "messages[1]"),
    ([{"role": "function", "name": "f", "content": "x"}], "messages[0].role"),
    ([{"role": "user", "name": "bob", "content": "Hi"}], "messages[0].name"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
     "messages[0].content[0].type"),
    ([{"role": "user", "content": [{"type": "text", "text": "a"},
                                   {"type": "file", "file": {}}]}],
     "messages[0].content[1].type"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
     "messages[0].content[0].image_url.url"),
    ([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
        "name": "f", "arguments": "not json"}}]}], "messages[0].tool_calls[0].function.arguments"),
])
def test_openai_messages_anthropic_cannot_express_are_refused(messages: list[Any],
                                                              field: str) -> None:
    assert refused_field(to_messages, {"model": "m", "messages": messages}) == field


@pytest.mark.parametrize(("extra", "field"), [
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
    ({"top_k": 40}, "top_k"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]},
     "mcp_servers"),
    ({"container": "cntr_1"}, "container"),
    ({"metadata": {"user_id": "u", "team": "x"}}, "metadata.team"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"tool_choice": {"type": "whatever"}}, "tool_choice"),
    ({"output_format": {"type": "json_schema"}}, "output_format"),
])
def test_anthropic_fields_openai_cannot_express_are_refused(extra: dict[str, Any],
                                                            field: str) -> None:
    assert refused_field(to_chat, {"model": "m", "max_tokens": 8, "messages": ASK,
                                   **extra}) == field


@pytest.mark.parametrize(("content", "field"), [
    ([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                      "data": "JVBERi0="}}], "messages[0].content[0].type"),
    ([{"type": "text", "text": "a", "citations": [{"type": "char_location"}]}],
     "messages[0].content[0].citations"),
    ([{"type": "image", "source": {"type": "file", "file_id": "file_1"}}],
     "messages[0].content[0].source.type"),
    ([{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]}],
     "messages[0].content[0].content[0].type"),
    ([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "messages[0].content[0].type"),
])
def test_anthropic_blocks_openai_cannot_express_are_refused(content: list[Any],
                                                            field: str) -> None:
    payload = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": content}]}
    assert refused_field(to_chat, payload) == field


def test_thinking_in_an_assistant_turn_is_refused() -> None:
    payload = {"model": "m", "max_tokens": 8, "messages": [*ASK, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"}]}]}
    assert refused_field(to_chat, payload) == "messages[1].content[0].type"


def test_values_that_ask_for_nothing_and_nulls_pass() -> None:
    to_messages({"model": "m", "messages": ASK, "n": 1, "logprobs": False, "top_logprobs": None,
                 "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": {}, "seed": None,
                 "response_format": {"type": "text"}, "service_tier": "auto", "store": False,
                 "prompt_cache_key": "k", "future_field": None})
    to_chat({"model": "m", "max_tokens": 8, "thinking": {"type": "disabled"},
             "service_tier": "standard_only", "mcp_servers": [], "top_k": None,
             "messages": [{"role": "user", "content": [
                 {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"},
                  "citations": None}]}]})


def test_a_surface_with_no_counterpart_is_refused() -> None:
    for surface in ("openai.responses", "openai.embeddings", "anthropic.count_tokens"):
        with pytest.raises(Untranslatable) as refused:
            request_body(surface, {"model": "m"}, "served", "anthropic")
        assert refused.value.field == "model"


def test_the_refusal_renders_in_either_format_and_names_its_field() -> None:
    with pytest.raises(Untranslatable) as refused:
        to_messages({"model": "m", "messages": ASK, "n": 3})
    error = refused.value
    assert (error.status, error.error_class) == (400, "Untranslatable:n")
    openai_body = orjson.loads(error.render("openai"))["error"]
    assert (openai_body["type"], openai_body["code"], openai_body["param"]) == (
        "invalid_request_error", "untranslatable_field", "n")
    assert "Anthropic Messages API" in openai_body["message"]
    assert orjson.loads(error.render("anthropic"))["error"]["type"] == "invalid_request_error"
