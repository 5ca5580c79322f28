"""The OpenAI wire format: chat completions, Responses, embeddings.

Each handler takes the parsed request body and answers as OpenAI does, whole
or streamed, with the usage the call is billed (``None`` for a refused call):
billed even when ``x-sim-no-usage`` hides it from the client or a stream is
cut. Streams report usage the way OpenAI does: chat completions only when
``stream_options.include_usage`` is set (then every chunk carries
``"usage":null`` and a last chunk with empty ``choices`` carries the counts),
the Responses API always, in ``response.completed``. A chat request whose
``tool_choice`` asks for a tool is answered with a call to one (``tools``),
whole or streamed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable
from typing import Any

import orjson
from starlette.responses import Response

from meterline.schemas import Usage

from .knobs import Knobs, json_response, openai_error, sse_response
from .text import (
    PromptCache,
    answer,
    created_s,
    estimate_tokens,
    ident,
    is_reasoning,
    sse_event,
    text_of,
)
from .tools import ToolCall, tool_call


def _usage_counts(prompt: str, text: str, model: str, cache: PromptCache,
                  extra_prompt_tokens: int = 0) -> tuple[int, int, int, int]:
    """(prompt tokens, cached, output tokens incl. reasoning, reasoning)."""
    prompt_tokens = estimate_tokens(prompt) + extra_prompt_tokens
    cached = prompt_tokens // 2 if prompt_tokens > 1024 and cache.hit(prompt[:4096]) else 0
    completion = estimate_tokens(text)
    reasoning = completion * 3 if is_reasoning(model) else 0
    return prompt_tokens, cached, completion + reasoning, reasoning


#: What a handler answers: the response, and the usage billed for it (None: nothing billed).
Served = tuple[Response, Usage | None]


def _billed(prompt_tokens: int, cached: int, output: int, reasoning: int, tier: str) -> Usage:
    """The usage billed, in ``Usage``'s convention (uncached input; "" the default tier)."""
    return Usage(input_tokens=prompt_tokens - cached, output_tokens=output,
                 cache_read_tokens=cached, reasoning_tokens=reasoning, source="provider",
                 service_tier="" if tier == "default" else tier)


def _served_tier(body: dict[str, Any]) -> str:
    """The ``service_tier`` OpenAI reports: the one asked for if it offers it, else default."""
    asked = body.get("service_tier")
    return asked if asked in ("flex", "priority", "scale") else "default"


def _spaced_json(data: Any) -> bytes:
    return json.dumps(data).encode()


def chat(body: dict[str, Any], knobs: Knobs, cache: PromptCache) -> Served:
    model = body.get("model")
    messages = body.get("messages")
    if not isinstance(model, str) or not isinstance(messages, list):
        return openai_error(400, "you must provide a model parameter and a messages array",
                            param="model" if not isinstance(model, str) else "messages"), None
    prompt = "\n".join(text_of(m.get("content")) for m in messages if isinstance(m, dict))
    text = answer(prompt, int(body.get("max_tokens") or body.get("max_completion_tokens") or 256))
    call = _tool_call(body, messages, prompt)
    if call and knobs.broken_tool_json:
        call = ToolCall(call.name, call.arguments[:-1])
    prompt_tokens, cached, output, reasoning = _usage_counts(
        prompt, call.name + call.arguments if call else text, model, cache, 3 * len(messages))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": output,
             "total_tokens": prompt_tokens + output,
             "prompt_tokens_details": {"cached_tokens": cached},
             "completion_tokens_details": {"reasoning_tokens": reasoning}}
    base: dict[str, Any] = {"id": ident("chatcmpl-", prompt), "object": "chat.completion",
                            "created": created_s(prompt), "model": model,
                            "service_tier": _served_tier(body)}
    billed = _billed(prompt_tokens, cached, output, reasoning, base["service_tier"])
    finish = "tool_calls" if call else "stop"
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if call:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": ident("call_", prompt), "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}}]}
        reply = {**base, "choices": [{"index": 0, "finish_reason": finish, "message": message}]}
        if not knobs.no_usage:
            reply["usage"] = usage
        return json_response(reply), billed
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    encode: Callable[[Any], bytes] = _spaced_json if knobs.spaced_json else orjson.dumps
    base["object"] = "chat.completion.chunk"
    tail: dict[str, Any] = {"usage": None} if with_usage else {}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": (" " if i else "") + word} for i, word in enumerate(text.split(" "))]
    if call:  # the name first, then the arguments in two pieces
        deltas = [{"role": "assistant", "content": None, "tool_calls": [{
            "index": 0, "id": ident("call_", prompt), "type": "function",
            "function": {"name": call.name, "arguments": ""}}]}]
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                   for piece in call.pieces]
    events = [sse_event(None, encode({**base, "choices": [{"index": 0, "delta": delta,
                                                          "finish_reason": None}], **tail}))
              for delta in deltas]
    events.append(sse_event(None, encode({**base, "choices": [{"index": 0, "delta": {},
                                                              "finish_reason": finish}], **tail})))
    if with_usage and not knobs.no_usage:
        events.append(sse_event(None, encode({**base, "choices": [], "usage": usage})))
    events.append(sse_event(None, b"[DONE]"))
    return sse_response(events, knobs), billed


def _tool_call(body: dict[str, Any], messages: list[Any], prompt: str) -> ToolCall | None:
    """The tool call that answers a chat request whose ``tool_choice`` asks for one, if any."""
    offered = [(tool["function"].get("name"), tool["function"].get("parameters"))
               for tool in body.get("tools") or []
               if isinstance(tool, dict) and isinstance(tool.get("function"), dict)]
    choice = body.get("tool_choice")
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if not offered or not (choice == "required" or isinstance(choice, dict)) \
            or last.get("role") == "tool":
        return None
    forced = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    return tool_call(offered, forced, prompt)


def _responses_prompt(body: dict[str, Any]) -> str:
    items = body.get("input")
    parts = [text_of(body.get("instructions"))]
    if isinstance(items, str):
        parts.append(items)
    elif isinstance(items, list):
        parts += [text_of(item.get("content")) for item in items if isinstance(item, dict)]
    return "\n".join(part for part in parts if part)


def responses(body: dict[str, Any], knobs: Knobs, cache: PromptCache) -> Served:
    model = body.get("model")
    if not isinstance(model, str) or "input" not in body:
        return openai_error(400, "you must provide a model parameter and an input",
                            param="model" if not isinstance(model, str) else "input"), None
    prompt = _responses_prompt(body)
    text = answer(prompt, int(body.get("max_output_tokens") or 256))
    prompt_tokens, cached, output, reasoning = _usage_counts(prompt, text, model, cache)
    usage = {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": cached},
             "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
             "total_tokens": prompt_tokens + output}
    resp_id, msg_id = ident("resp_", prompt), ident("msg_", prompt)
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
            "content": [part]}
    done: dict[str, Any] = {
        "id": resp_id, "object": "response", "created_at": created_s(prompt),
        "status": "completed", "model": model, "output": [item], "parallel_tool_calls": True,
        "tool_choice": "auto", "tools": [], "service_tier": _served_tier(body),
        "usage": None if knobs.no_usage else usage}
    billed = _billed(prompt_tokens, cached, output, reasoning, done["service_tier"])
    if not body.get("stream"):
        return json_response(done), billed
    started = {**done, "status": "in_progress", "output": [], "usage": None}
    names_data: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
        ("response.output_item.added", {"output_index": 0, "item": {
            **item, "status": "in_progress", "content": []}}),
        ("response.content_part.added", {"item_id": msg_id, "output_index": 0,
                                         "content_index": 0, "part": {**part, "text": ""}}),
    ]
    names_data += [("response.output_text.delta", {
        "item_id": msg_id, "output_index": 0, "content_index": 0,
        "delta": (" " if i else "") + word}) for i, word in enumerate(text.split(" "))]
    names_data += [
        ("response.output_text.done", {"item_id": msg_id, "output_index": 0, "content_index": 0,
                                       "text": text}),
        ("response.content_part.done", {"item_id": msg_id, "output_index": 0,
                                        "content_index": 0, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": done}),
    ]
    events = [sse_event(name, {"type": name, "sequence_number": number, **data})
              for number, (name, data) in enumerate(names_data)]
    return sse_response(events, knobs), billed


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * (dimensions // 32 + 1)
    return [round((byte - 127.5) / 127.5, 4) for byte in digest[:dimensions]]


def embeddings(body: dict[str, Any], knobs: Knobs, cache: PromptCache) -> Served:
    model, raw = body.get("model"), body.get("input")
    if not isinstance(model, str) or raw is None:
        return openai_error(400, "you must provide a model parameter and an input",
                            param="model" if not isinstance(model, str) else "input"), None
    inputs = [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and
                                               isinstance(raw[0], int)) else list(raw)
    dimensions = int(body.get("dimensions") or 16)
    data: list[dict[str, Any]] = []
    tokens = 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += estimate_tokens(text) if isinstance(item, str) else len(item)
        vector = _vector(text, dimensions)
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    reply: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if not knobs.no_usage:
        reply["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return json_response(reply), Usage(input_tokens=tokens, source="provider")
