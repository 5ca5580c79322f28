"""Whole answers and provider errors in the caller's shape (``ingest/translate/responses``)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from meterline.ingest.errors import UntranslatableAnswer
from meterline.ingest.translate.responses import (
    completion_to_message,
    error_body,
    finish_reason,
    message_to_completion,
    stop_reason,
)

ANTHROPIC_USAGE = {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 100,
                   "cache_creation_input_tokens": 20}


def test_an_anthropic_message_becomes_a_chat_completion() -> None:
    completion = message_to_completion({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Let me check. "},
                    {"type": "text", "text": "One moment."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                     "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": ANTHROPIC_USAGE})
    assert isinstance(completion.pop("created"), int)
    assert completion == {
        "id": "msg_1", "object": "chat.completion", "model": "claude-sonnet-4-5",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check. One moment.", "refusal": None,
            "tool_calls": [{"id": "toolu_1", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}],
        "usage": {"prompt_tokens": 130, "completion_tokens": 7, "total_tokens": 137,
                  "prompt_tokens_details": {"cached_tokens": 100}}}


def test_a_tool_call_only_message_has_null_content() -> None:
    completion = message_to_completion({"content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": {}}], "stop_reason": "tool_use"})
    assert completion["choices"][0]["message"]["content"] is None
    assert "usage" not in completion


def test_a_chat_completion_becomes_an_anthropic_message() -> None:
    message = completion_to_message({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240,
                  "prompt_tokens_details": {"cached_tokens": 1024},
                  "completion_tokens_details": {"reasoning_tokens": 12}}}, "openai")
    assert message == {
        "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o-mini",
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather",
                     "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 176, "output_tokens": 40, "cache_read_input_tokens": 1024,
                  "cache_creation_input_tokens": 0}}


def test_tool_arguments_that_are_not_a_json_object_cannot_be_carried() -> None:
    for arguments in ('{"city": "Os', '["a"]'):
        with pytest.raises(UntranslatableAnswer) as caught:
            completion_to_message({"choices": [{"message": {"tool_calls": [
                {"id": "c", "function": {"name": "f", "arguments": arguments}}]}}]}, "vllm")
        assert caught.value.status == 502 and "'vllm'" in caught.value.message
    assert orjson.loads(caught.value.render("anthropic"))["error"]["type"] == "api_error"


@pytest.mark.parametrize(("anthropic", "openai"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), (None, "stop")])
def test_stop_reasons_map_to_finish_reasons(anthropic: Any, openai: str) -> None:
    assert finish_reason(anthropic) == openai


@pytest.mark.parametrize(("openai", "anthropic"), [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("function_call", "tool_use"), ("content_filter", "refusal"), (None, "end_turn")])
def test_finish_reasons_map_to_stop_reasons(openai: Any, anthropic: str) -> None:
    assert stop_reason(openai) == anthropic


def test_provider_errors_are_rendered_in_the_callers_format() -> None:
    anthropic_error = {"type": "error", "error": {"type": "overloaded_error",
                                                  "message": "Overloaded"}}
    raw = orjson.dumps(anthropic_error)
    assert orjson.loads(error_body(False, 529, anthropic_error, raw)) == {"error": {
        "message": "Overloaded", "type": "server_error", "param": None,
        "code": "overloaded_error"}}
    openai_error = {"error": {"message": "Slow down", "type": "requests", "param": None,
                              "code": "rate_limit_exceeded"}}
    assert orjson.loads(error_body(True, 429, openai_error, orjson.dumps(openai_error))) == {
        "type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}
    assert orjson.loads(error_body(True, 400, None, b"<html>bad gateway</html>")) == {
        "type": "error", "error": {"type": "invalid_request_error",
                                   "message": "<html>bad gateway</html>"}}
    assert orjson.loads(error_body(False, 401, {"error": "no key"}, b""))["error"][
        "type"] == "invalid_request_error"
