"""The Anthropic wire format: messages (whole and streamed) and count_tokens.

Prompt caching follows the request: text in blocks marked ``cache_control``
is reported as a cache write the first time (5 minute, or 1 hour when the
last marker says ``"ttl": "1h"``) and as a cache read on a repeat. Streams
report usage as Anthropic does: input and cache counts in ``message_start``,
the cumulative output count in ``message_delta``. Handlers answer the response
and the usage billed for it (``None`` when nothing is billed: a refused call,
count_tokens), whatever the client was shown. A request whose ``tool_choice``
asks for a tool is answered with a ``tool_use`` block calling one (``tools``),
whole or streamed.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from meterline.schemas import Usage

from .knobs import Knobs, anthropic_error, json_response, sse_response
from .text import PromptCache, answer, estimate_tokens, ident, sse_event, text_of
from .tools import ToolCall, tool_call


def _prompt(body: dict[str, Any]) -> str:
    system = text_of(body.get("system"))
    messages = body.get("messages") or []
    return system + "\n" + "\n".join(text_of(m.get("content")) for m in messages
                                     if isinstance(m, dict))


def _cacheable_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    system = body.get("system")
    blocks: list[Any] = list(system) if isinstance(system, list) else []
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            blocks += message["content"]
    return [block for block in blocks if isinstance(block, dict) and block.get("cache_control")]


def _invalid(body: dict[str, Any]) -> Response | None:
    if not isinstance(body.get("model"), str):
        return anthropic_error(400, "model: Field required")
    if not isinstance(body.get("messages"), list):
        return anthropic_error(400, "messages: Field required")
    return None


def _tool_call(body: dict[str, Any], prompt: str) -> ToolCall | None:
    """The tool call that answers a request whose ``tool_choice`` asks for one, if any."""
    offered = [(tool.get("name"), tool.get("input_schema")) for tool in body.get("tools") or []
               if isinstance(tool, dict)]
    choice = body.get("tool_choice")
    choice = choice if isinstance(choice, dict) else {}
    last = (body.get("messages") or [{}])[-1]
    content = last.get("content") if isinstance(last, dict) else None
    answered = isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content)
    if not offered or choice.get("type") not in ("any", "tool") or answered:
        return None
    return tool_call(offered, choice.get("name") if choice.get("type") == "tool" else None,
                     prompt)


def _opened(message: dict[str, Any]) -> dict[str, Any]:
    """The streamed content block as content_block_start opens it: empty."""
    block = message["content"][0]
    return {**block, "input": {}} if block["type"] == "tool_use" else {"type": "text", "text": ""}


def _deltas(call: ToolCall | None, text: str) -> list[dict[str, Any]]:
    """The block's deltas: text word by word, or the tool input's JSON in two pieces."""
    if call is None:
        return [{"type": "text_delta", "text": (" " if i else "") + word}
                for i, word in enumerate(text.split(" "))]
    return [{"type": "input_json_delta", "partial_json": piece} for piece in call.pieces]


#: What a handler answers: the response, and the usage billed for it (None: nothing billed).
Served = tuple[Response, Usage | None]


def count_tokens(body: dict[str, Any], knobs: Knobs, cache: PromptCache) -> Served:
    if (invalid := _invalid(body)) is not None:
        return invalid, None
    return json_response({"input_tokens": estimate_tokens(_prompt(body))}), None


def messages(body: dict[str, Any], knobs: Knobs, cache: PromptCache) -> Served:
    if (invalid := _invalid(body)) is not None:
        return invalid, None
    if not isinstance(body.get("max_tokens"), int):
        return anthropic_error(400, "max_tokens: Field required"), None
    model = body["model"]
    prompt = _prompt(body)
    write_5m = write_1h = read = 0
    cacheable = _cacheable_blocks(body)
    if cacheable:
        cached_text = "".join(text_of(block.get("text")) for block in cacheable)
        tokens = estimate_tokens(cached_text)
        if cache.hit(cached_text):
            read = tokens
        elif (cacheable[-1].get("cache_control") or {}).get("ttl") == "1h":
            write_1h = tokens
        else:
            write_5m = tokens
    input_tokens = max(1, estimate_tokens(prompt) - read - write_5m - write_1h)
    text = answer(prompt, body["max_tokens"])
    call = _tool_call(body, prompt)
    output = estimate_tokens(call.name + call.arguments if call else text)
    usage: dict[str, Any] = {
        "input_tokens": input_tokens, "output_tokens": output,
        "cache_read_input_tokens": read, "cache_creation_input_tokens": write_5m + write_1h,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m,
                           "ephemeral_1h_input_tokens": write_1h},
        "service_tier": "standard"}
    billed = Usage(input_tokens=input_tokens, output_tokens=output, cache_read_tokens=read,
                   cache_write_5m_tokens=write_5m, cache_write_1h_tokens=write_1h,
                   source="provider")
    message: dict[str, Any] = {
        "id": ident("msg_", prompt), "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "tool_use", "id": ident("toolu_", prompt), "name": call.name,
                     "input": call.input} if call else {"type": "text", "text": text}],
        "stop_reason": "tool_use" if call else "end_turn",
        "stop_sequence": None, "usage": usage}
    if not body.get("stream"):
        if knobs.no_usage:
            del message["usage"]
        return json_response(message), billed
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    if knobs.no_usage:
        del start["usage"]
    events = [sse_event("message_start", {"type": "message_start", "message": start}),
              sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": _opened(message)}),
              sse_event("ping", {"type": "ping"})]
    events += [sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": delta})
               for delta in _deltas(call, text)]
    delta: dict[str, Any] = {"type": "message_delta", "delta": {
        "stop_reason": message["stop_reason"], "stop_sequence": None}}
    if not knobs.no_usage:
        delta["usage"] = {"output_tokens": output}
    events += [sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
               sse_event("message_delta", delta),
               sse_event("message_stop", {"type": "message_stop"})]
    return sse_response(events, knobs), billed
