"""Request translation between chat completions and messages (``ingest/translate/requests``).

Each direction is checked field by field on one request that uses everything
translated: system prompts, multi-part text, images by data URL and by URL,
tools, tool choice, assistant tool calls, tool results, limits, sampling and
stop sequences. Refusals are in test_translate_refusals.py.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from meterline.ingest.translate import crosses_shape, request_body, upstream_path
from meterline.ingest.translate.requests import (
    DEFAULT_MAX_TOKENS,
    chat_to_messages,
    messages_to_chat,
)
from meterline.schemas import ProviderKind

PNG = "iVBORw0KGgo="
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_a_chat_request_becomes_a_messages_request() -> None:
    chat: dict[str, Any] = {
        "model": "chat-on-claude", "max_completion_tokens": 300, "temperature": 0.2,
        "top_p": 0.9, "stop": "END", "stream": True, "stream_options": {"include_usage": True},
        "user": "alice@example.com", "n": 1, "logprobs": False, "parallel_tool_calls": False,
        "tools": [{"type": "function", "function": {"name": "get_weather",
                                                    "description": "Weather.",
                                                    "parameters": SCHEMA}}],
        "tool_choice": "required",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Compare these:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}",
                                                    "detail": "auto"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            {"role": "tool", "tool_call_id": "call_2",
             "content": [{"type": "text", "text": "Snow"}]},
            {"role": "user", "content": "Which is warmer?"},
        ]}
    assert chat_to_messages(chat, "claude-sonnet-4-5") == {
        "model": "claude-sonnet-4-5", "max_tokens": 300, "temperature": 0.2, "top_p": 0.9,
        "stop_sequences": ["END"], "stream": True,
        "metadata": {"user_id": "alice@example.com"},
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
        "tools": [{"name": "get_weather", "description": "Weather.", "input_schema": SCHEMA}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Compare these:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}},
                {"type": "image", "source": {"type": "url",
                                             "url": "https://example.com/b.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather",
                 "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather",
                 "input": {"city": "Oslo"}}]},
            # both results and the next question in one user turn, results first
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
                {"type": "tool_result", "tool_use_id": "call_2",
                 "content": [{"type": "text", "text": "Snow"}]},
                {"type": "text", "text": "Which is warmer?"}]},
        ]}


def test_max_tokens_defaults_and_tool_choices_map() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    assert chat_to_messages(base, "claude")["max_tokens"] == DEFAULT_MAX_TOKENS == 4096
    assert chat_to_messages({**base, "max_tokens": 50}, "claude")["max_tokens"] == 50
    tools = [{"type": "function", "function": {"name": "f"}}]
    expected: list[tuple[Any, Any]] = [
        ("auto", {"type": "auto"}), ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"})]
    for choice, translated in expected:
        out = chat_to_messages({**base, "tools": tools, "tool_choice": choice}, "claude")
        assert out["tool_choice"] == translated
    # a tool without parameters gets an empty object schema; parallel calls off, no choice
    out = chat_to_messages({**base, "tools": tools, "parallel_tool_calls": False}, "claude")
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_a_messages_request_becomes_a_chat_request() -> None:
    messages: dict[str, Any] = {
        "model": "messages-on-gpt", "max_tokens": 512, "temperature": 0.5, "top_p": 0.8,
        "stop_sequences": ["END", "STOP"], "stream": True, "metadata": {"user_id": "u-42"},
        "thinking": {"type": "disabled"}, "service_tier": "auto",
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "get_weather", "description": "Weather.", "input_schema": SCHEMA,
                   "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Compare these:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/b.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny",
                 "is_error": False},
                {"type": "text", "text": "And Oslo?"}]},
            {"role": "assistant", "content": "I will check."},
        ]}
    assert messages_to_chat(messages, "gpt-4o-mini", "openai") == {
        "model": "gpt-4o-mini", "max_completion_tokens": 512, "temperature": 0.5, "top_p": 0.8,
        "stop": ["END", "STOP"], "stream": True, "stream_options": {"include_usage": True},
        "user": "u-42",
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather.", "parameters": SCHEMA}}],
        "tool_choice": "required", "parallel_tool_calls": False,
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Compare these:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
            {"role": "user", "content": [{"type": "text", "text": "And Oslo?"}]},
            {"role": "assistant", "content": "I will check."},
        ]}


@pytest.mark.parametrize(("kind", "field"), [
    ("openai", "max_completion_tokens"), ("azure", "max_completion_tokens"),
    ("openai_compatible", "max_tokens")])
def test_the_limit_goes_in_the_field_the_target_kind_takes(kind: ProviderKind, field: str) -> None:
    out = messages_to_chat({"model": "m", "max_tokens": 64,
                            "messages": [{"role": "user", "content": "Hi"}]}, "served", kind)
    assert out == {"model": "served", field: 64, "messages": [{"role": "user", "content": "Hi"}]}


def test_tool_use_only_turns_and_tool_choices_map_to_chat() -> None:
    out = messages_to_chat({"model": "m", "max_tokens": 8, "system": "Sys", "messages": [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                      "content": [{"type": "text", "text": "done"}]}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"}}, "gpt", "openai")
    assert out["messages"] == [
        {"role": "system", "content": "Sys"}, {"role": "user", "content": "Go"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": [{"type": "text", "text": "done"}]}]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert "parallel_tool_calls" not in out


def test_a_conversation_translated_there_and_back_is_the_same() -> None:
    chat: dict[str, Any] = {"model": "m", "max_tokens": 100, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "w", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"}]}
    back = messages_to_chat(chat_to_messages(chat, "claude"), "m", "openai_compatible")
    assert back["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        chat["messages"][2], chat["messages"][3]]


def test_routes_to_the_other_shape_and_its_path() -> None:
    assert [crosses_shape(kind, anthropic_style=False)
            for kind in ("openai", "azure", "openai_compatible", "anthropic", "simulated")] == [
        False, False, False, True, False]
    assert crosses_shape("openai_compatible", True) and not crosses_shape("simulated", True)
    assert (upstream_path(False), upstream_path(True)) == ("/v1/messages",
                                                           "/v1/chat/completions")
    body = request_body("openai.chat", {"model": "alias", "messages": []}, "claude", "anthropic")
    assert orjson.loads(body) == {"model": "claude", "max_tokens": 4096, "messages": []}
