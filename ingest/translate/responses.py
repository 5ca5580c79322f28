"""Whole answers from the upstream's API shape to the caller's: messages, completions, errors.

``message_to_completion`` renders an Anthropic message as an OpenAI chat
completion, ``completion_to_message`` the reverse; ``error_body`` renders a
provider's error in the caller's error format, its status kept. Stop reasons
map as the APIs define them:

    Anthropic        OpenAI
    end_turn         stop
    stop_sequence    stop            (OpenAI does not say a stop sequence ended it)
    max_tokens       length
    tool_use         tool_calls
    refusal          content_filter

so an OpenAI ``stop`` always reads back as ``end_turn``, with ``stop_sequence``
null. Usage maps as ``translate.usage`` explains.

One answer cannot be rendered: an OpenAI tool call whose arguments are not a
JSON object (a model can write broken JSON), since an Anthropic ``tool_use``
block carries its input as an object. ``completion_to_message`` raises
``UntranslatableAnswer`` for it, and the caller gets a 502 in its own format.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..errors import UntranslatableAnswer
from .usage import anthropic_usage, openai_usage

Json = dict[str, Any]

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                  "tool_use": "tool_calls", "refusal": "content_filter",
                  "pause_turn": "stop", "model_context_window_exceeded": "length"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}


def finish_reason(stop_reason: Any) -> str:
    """The OpenAI ``finish_reason`` for an Anthropic ``stop_reason``."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def stop_reason(finish: Any) -> str:
    """The Anthropic ``stop_reason`` for an OpenAI ``finish_reason``."""
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def message_to_completion(message: Json) -> Json:
    """An OpenAI chat completion for an Anthropic message.

    Text blocks join into ``content``; tool_use blocks become ``tool_calls``, their
    input JSON-encoded as ``arguments``. No other block is asked for: the request
    translation refuses what would produce one (thinking, server tools).
    """
    text: list[str] = []
    calls: list[Json] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"),
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    reply: Json = {"role": "assistant", "content": "".join(text) if text or not calls else None,
                   "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    out: Json = {"id": message.get("id"), "object": "chat.completion",
                 "created": int(time.time()), "model": message.get("model"),
                 "choices": [{"index": 0, "message": reply, "logprobs": None,
                              "finish_reason": finish_reason(message.get("stop_reason"))}]}
    if isinstance(message.get("usage"), dict):
        out["usage"] = openai_usage(message["usage"])
    return out


def completion_to_message(completion: Json, provider: str) -> Json:
    """An Anthropic message for an OpenAI chat completion (its first choice: an Anthropic
    caller cannot ask for more)."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    reply = choice.get("message") or {}
    content: list[Json] = []
    text = reply.get("content") or reply.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise UntranslatableAnswer(
                f"The upstream provider '{provider}' answered a tool call whose arguments are "
                "not a JSON object, which an Anthropic tool_use block cannot carry.")
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                        "input": arguments})
    usage = completion.get("usage")
    return {"id": completion.get("id"), "type": "message", "role": "assistant",
            "model": completion.get("model"), "content": content,
            "stop_reason": stop_reason(choice.get("finish_reason")), "stop_sequence": None,
            "usage": anthropic_usage(usage if isinstance(usage, dict) else {})}


#: Anthropic error types by status, as Anthropic documents them.
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                          403: "permission_error", 404: "not_found_error",
                          413: "request_too_large", 429: "rate_limit_error",
                          529: "overloaded_error", 503: "overloaded_error",
                          504: "timeout_error"}
_MAX_MESSAGE_CHARS = 2000


def _error_message(body: Any, raw: bytes) -> tuple[str, Any]:
    """(message, provider's error type or code) of an error body in either shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or ""), error.get("type") or error.get("code")
    if isinstance(error, str):
        return error, None
    return raw.decode("utf-8", "replace")[:_MAX_MESSAGE_CHARS], None


def openai_error(status: int, body: Any, raw: bytes = b"") -> Json:
    """An OpenAI error object (``{"error": ...}``) for a provider error in either shape."""
    message, kind = _error_message(body, raw)
    openai_type = ("requests" if status == 429 else "server_error" if status >= 500
                   else "invalid_request_error")
    return {"error": {"message": message, "type": openai_type, "param": None,
                      "code": kind if isinstance(kind, str) else None}}


def anthropic_error(status: int, body: Any, raw: bytes = b"") -> Json:
    """An Anthropic error object for a provider error in either shape."""
    message, _ = _error_message(body, raw)
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500
                                      else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_body(anthropic_caller: bool, status: int, body: Any, raw: bytes) -> bytes:
    """The provider's error ``raw`` (``body`` parsed, or None), in the caller's format."""
    render = anthropic_error if anthropic_caller else openai_error
    return orjson.dumps(render(status, body, raw))
