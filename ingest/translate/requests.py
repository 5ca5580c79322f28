"""Request bodies from one API shape to the other: chat completions and messages.

``chat_to_messages`` turns an OpenAI chat completions request into an
Anthropic messages request; ``messages_to_chat`` does the reverse. Each looks
at every field of the caller's body, and each field is one of:

- translated (system prompts, text, images, tools and tool calls, tool
  results, limits, sampling, stop sequences, the end-user id);
- handled by the gateway (``stream_options``: usage is always asked of an
  OpenAI upstream, and given to an OpenAI client only when it asked);
- a hint with no effect on the answer, left out (Anthropic's ``cache_control``,
  OpenAI's ``prompt_cache_key`` and image ``detail``, a tool result's
  ``is_error`` flag, whose error text is the result itself);
- refused with ``Untranslatable``, naming the field, when the other API has
  no counterpart that keeps its meaning (``n`` above 1, ``logprobs``,
  Anthropic's ``thinking``, server tools ...), or when the field is unknown.
  A field set to null, or to the value that asks for nothing (``n: 1``,
  ``logprobs: false``, ``thinking: {"type": "disabled"}``), is accepted (SDKs
  dump unset fields as null).

The refusal is raised before anything is sent upstream. docs/routing.md lists
what is translated and what is refused, and why.
"""

from __future__ import annotations

from typing import Any

import orjson

from meterline.schemas import ProviderKind

from ..errors import BadRequest, Untranslatable

#: Anthropic requires ``max_tokens``; an OpenAI request that gives neither
#: ``max_tokens`` nor ``max_completion_tokens`` is sent with this many.
DEFAULT_MAX_TOKENS = 4096

Json = dict[str, Any]

#: OpenAI fields with no Anthropic counterpart: the values besides null that ask for
#: nothing, and why any other value is refused.
_CHAT_NEUTRAL: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((1,), "answers with one choice only"),
    "logprobs": ((False,), "reports no log probabilities"),
    "top_logprobs": ((), "reports no log probabilities"),
    "logit_bias": (({},), "has no logit bias"),
    "frequency_penalty": ((0,), "has no frequency penalty"),
    "presence_penalty": ((0,), "has no presence penalty"),
    "seed": ((), "has no sampling seed"),
    "response_format": (({"type": "text"},), "has no JSON response format"),
    "modalities": ((["text"],), "answers in text only"),
    "audio": ((), "answers in text only"),
    "store": ((False,), "does not store completions"),
    "metadata": (({},), "does not store completions, which metadata tags"),
    "reasoning_effort": ((), "sets thinking by a token budget, not an effort"),
    "verbosity": ((), "has no verbosity setting"),
    "prediction": ((), "has no predicted outputs"),
    "web_search_options": ((), "searches the web only through a server tool"),
    "service_tier": (("auto", "default"), "has no flex or priority tier of that name"),
    "functions": ((), "takes tools, not the legacy functions"),
    "function_call": ((), "takes tool_choice, not the legacy function_call"),
}

#: OpenAI fields translated or handled here.
_CHAT_FIELDS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "stop", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "user",
    "safety_identifier", "prompt_cache_key"})

#: Anthropic fields with no OpenAI counterpart: the values that ask for nothing, and why.
_MESSAGES_NEUTRAL: dict[str, tuple[tuple[Any, ...], str]] = {
    "thinking": (({"type": "disabled"},), "sets reasoning by effort, not a token budget"),
    "top_k": ((), "has no top_k sampling"),
    "service_tier": (("auto", "standard_only"), "chooses tiers by other names"),
    "container": ((), "has no code execution container"),
    "mcp_servers": (([],), "connects no MCP servers"),
    "context_management": ((), "does not edit the context"),
}

_MESSAGES_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "tools", "tool_choice"})


def _refuse(field: str, why: str, shape: str) -> Untranslatable:
    return Untranslatable(f"`{field}` cannot be sent to this model: it is served through the "
                          f"{shape} API, which {why}. Leave it out, or ask for a model served "
                          "by a provider of your API's own shape.", field=field)


def _check_fields(payload: Json, known: frozenset[str],
                  neutral: dict[str, tuple[tuple[Any, ...], str]], shape: str) -> None:
    for name, value in payload.items():
        if name in known or value is None:
            continue
        if name not in neutral:
            raise _refuse(name, "has no such field", shape)
        accepted, why = neutral[name]
        if value not in accepted:
            raise _refuse(name, why, shape)


def _check_keys(item: Json, allowed: frozenset[str], where: str, shape: str) -> None:
    for name, value in item.items():
        if name not in allowed and value is not None:
            raise _refuse(f"{where}.{name}", "has no such field there", shape)


def _objects(value: Any, where: str) -> list[Json]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadRequest(f"`{where}` must be an array of objects.", param=where)
    return value


# OpenAI chat completions -> Anthropic messages

_ANTHROPIC = "Anthropic Messages"
_TEXT_PART = frozenset({"type", "text"})
_TEXT_OR_REFUSAL_PART = frozenset({"type", "text", "refusal"})
_MESSAGE_KEYS = {
    "system": frozenset({"role", "content"}), "developer": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls", "refusal"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}


def chat_to_messages(payload: Json, model: str) -> Json:
    """The Anthropic messages request for an OpenAI chat completions request."""
    _check_fields(payload, _CHAT_FIELDS, _CHAT_NEUTRAL, _ANTHROPIC)
    system, turns = _chat_turns(_objects(payload.get("messages"), "messages"))
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    out: Json = {"model": model, "max_tokens": limit or DEFAULT_MAX_TOKENS, "messages": turns}
    if system:
        out["system"] = system
    temperature = payload.get("temperature")
    if temperature is not None:
        if isinstance(temperature, int | float) and temperature > 1:
            raise _refuse("temperature", "takes temperatures from 0 to 1", _ANTHROPIC)
        out["temperature"] = temperature
    if payload.get("top_p") is not None:
        out["top_p"] = payload["top_p"]
    stop = payload.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    if payload.get("stream") is True:
        out["stream"] = True
    user = payload.get("safety_identifier") or payload.get("user")
    if user:
        out["metadata"] = {"user_id": user}
    if payload.get("tools"):
        out["tools"] = [_anthropic_tool(tool, f"tools[{i}]")
                        for i, tool in enumerate(_objects(payload["tools"], "tools"))]
    choice = _anthropic_tool_choice(payload.get("tool_choice"))
    if payload.get("parallel_tool_calls") is False and out.get("tools"):
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        out["tool_choice"] = choice
    return out


def _chat_turns(messages: list[Json]) -> tuple[list[Json], list[Json]]:
    """(system blocks, alternating turns): leading system and developer messages become
    the system prompt; each tool message becomes a tool_result block of a user turn."""
    system: list[Json] = []
    turns: list[Json] = []
    for i, message in enumerate(messages):
        role, where = message.get("role"), f"messages[{i}]"
        if role not in _MESSAGE_KEYS:
            raise _refuse(f"{where}.role", f"has no {role!r} role", _ANTHROPIC)
        _check_keys(message, _MESSAGE_KEYS[role], where, _ANTHROPIC)
        content = message.get("content")
        if role in ("system", "developer"):
            if turns:
                raise _refuse(where, "takes a system prompt only before the conversation",
                              _ANTHROPIC)
            system += _text_blocks(content, f"{where}.content")
        elif role == "user":
            _append(turns, "user", _user_blocks(content, f"{where}.content"))
        elif role == "assistant":
            blocks = _text_blocks(content, f"{where}.content")
            if message.get("refusal"):
                blocks.append({"type": "text", "text": message["refusal"]})
            blocks += [_tool_use(call, f"{where}.tool_calls[{j}]")
                       for j, call in enumerate(_objects(message.get("tool_calls") or [],
                                                         f"{where}.tool_calls"))]
            _append(turns, "assistant", blocks)
        else:
            result = content if isinstance(content, str) else _text_blocks(content,
                                                                           f"{where}.content")
            _append(turns, "user", [{"type": "tool_result",
                                     "tool_use_id": message.get("tool_call_id"),
                                     "content": result}])
    return system, turns


def _append(turns: list[Json], role: str, blocks: list[Json]) -> None:
    """Add ``blocks`` to the conversation, in the last turn when it is ``role``'s too."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] += blocks
    else:
        turns.append({"role": role, "content": blocks})


def _text_blocks(content: Any, where: str) -> list[Json]:
    """Text content (a string or text parts; none at all) as Anthropic text blocks."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for j, part in enumerate(_objects(content, where)):
        if part.get("type") not in ("text", "refusal"):
            raise _refuse(f"{where}[{j}].type", f"takes no {part.get('type')!r} part here",
                          _ANTHROPIC)
        _check_keys(part, _TEXT_OR_REFUSAL_PART, f"{where}[{j}]", _ANTHROPIC)
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if text:
            blocks.append({"type": "text", "text": text})
    return blocks


def _user_blocks(content: Any, where: str) -> list[Json]:
    if not isinstance(content, list):
        return _text_blocks(content, where)
    blocks = []
    for j, part in enumerate(_objects(content, where)):
        if part.get("type") == "image_url":
            _check_keys(part, frozenset({"type", "image_url"}), f"{where}[{j}]", _ANTHROPIC)
            blocks.append(_anthropic_image(part.get("image_url"), f"{where}[{j}].image_url"))
        elif part.get("type") == "text":
            _check_keys(part, _TEXT_PART, f"{where}[{j}]", _ANTHROPIC)
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        else:
            raise _refuse(f"{where}[{j}].type", f"takes no {part.get('type')!r} part",
                          _ANTHROPIC)
    return blocks


def _anthropic_image(image: Any, where: str) -> Json:
    """An image part's URL as an image block: a ``data:`` URL as base64, else by URL."""
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise BadRequest(f"`{where}.url` must be a string.", param=f"{where}.url")
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding != "base64":
            raise _refuse(f"{where}.url", "takes data URLs only base64-encoded", _ANTHROPIC)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                            "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _refuse(f"{where}.url", "takes images as data or http(s) URLs", _ANTHROPIC)


def _tool_use(call: Json, where: str) -> Json:
    if call.get("type", "function") != "function":
        raise _refuse(f"{where}.type", "calls function tools only", _ANTHROPIC)
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        parsed = None
    if not isinstance(parsed, dict):
        raise _refuse(f"{where}.function.arguments", "takes a tool call's input only as a JSON "
                      "object", _ANTHROPIC)
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
            "input": parsed}


def _anthropic_tool(tool: Json, where: str) -> Json:
    if tool.get("type") != "function":
        raise _refuse(f"{where}.type", f"has no {tool.get('type')!r} tools", _ANTHROPIC)
    function = tool.get("function") or {}
    if function.get("strict"):
        raise _refuse(f"{where}.function.strict", "does not hold tool input to the schema",
                      _ANTHROPIC)
    out: Json = {"name": function.get("name"),
                 "input_schema": function.get("parameters") or {"type": "object",
                                                                "properties": {}}}
    if function.get("description"):
        out["description"] = function["description"]
    return out


_TOOL_CHOICES = {"auto": "auto", "none": "none", "required": "any"}


def _anthropic_tool_choice(choice: Any) -> Json | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return {"type": _TOOL_CHOICES[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    raise _refuse("tool_choice", "chooses tools by auto, none, required or one name", _ANTHROPIC)


# Anthropic messages -> OpenAI chat completions

_OPENAI = "OpenAI chat completions"
_BLOCK_KEYS = {
    "text": frozenset({"type", "text", "cache_control"}),
    "image": frozenset({"type", "source", "cache_control"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"}),
}
_ROLE_BLOCKS = {"user": frozenset({"text", "image", "tool_result"}),
                "assistant": frozenset({"text", "tool_use"})}
#: OpenAI and Azure take ``max_completion_tokens`` (their reasoning models refuse
#: ``max_tokens``); OpenAI-compatible servers (vLLM, llama.cpp ...) all take ``max_tokens``.
_LIMIT_FIELD: dict[ProviderKind, str] = {"openai": "max_completion_tokens",
                                         "azure": "max_completion_tokens"}


def messages_to_chat(payload: Json, model: str, kind: ProviderKind) -> Json:
    """The OpenAI chat completions request for an Anthropic messages request."""
    _check_fields(payload, _MESSAGES_FIELDS, _MESSAGES_NEUTRAL, _OPENAI)
    messages = _system_messages(payload.get("system"))
    for i, message in enumerate(_objects(payload.get("messages"), "messages")):
        messages += _chat_messages(message, f"messages[{i}]")
    out: Json = {"model": model, "messages": messages}
    if payload.get("max_tokens") is not None:
        out[_LIMIT_FIELD.get(kind, "max_tokens")] = payload["max_tokens"]
    for name in ("temperature", "top_p"):
        if payload.get(name) is not None:
            out[name] = payload[name]
    if payload.get("stop_sequences"):
        out["stop"] = payload["stop_sequences"]
    if payload.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # the envelope needs it
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequest("`metadata` must be an object.", param="metadata")
    _check_keys(metadata, frozenset({"user_id"}), "metadata", _OPENAI)
    if metadata.get("user_id"):
        out["user"] = metadata["user_id"]
    if payload.get("tools"):
        out["tools"] = [_openai_tool(tool, f"tools[{i}]")
                        for i, tool in enumerate(_objects(payload["tools"], "tools"))]
    choice = payload.get("tool_choice")
    if choice is not None:
        out["tool_choice"], parallel = _openai_tool_choice(choice)
        if not parallel and out.get("tools"):
            out["parallel_tool_calls"] = False
    return out


def _system_messages(system: Any) -> list[Json]:
    if system is None or system == "" or system == []:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    parts = []
    for j, block in enumerate(_objects(system, "system")):
        if block.get("type") != "text":
            raise _refuse(f"system[{j}].type", "takes a system prompt of text only", _OPENAI)
        _check_keys(block, _BLOCK_KEYS["text"], f"system[{j}]", _OPENAI)
        parts.append({"type": "text", "text": block.get("text")})
    return [{"role": "system", "content": parts}]


def _chat_messages(message: Json, where: str) -> list[Json]:
    """One Anthropic turn as chat messages: a user turn's tool results become tool
    messages (first, as Anthropic puts them), an assistant's tool_use blocks tool_calls."""
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise _refuse(f"{where}.role", f"has no {role!r} role in messages", _OPENAI)
    _check_keys(message, frozenset({"role", "content"}), where, _OPENAI)
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    tools: list[Json] = []
    parts: list[Json] = []
    calls: list[Json] = []
    for j, block in enumerate(_objects(content, f"{where}.content")):
        kind, at = block.get("type"), f"{where}.content[{j}]"
        if kind not in _ROLE_BLOCKS[role]:
            raise _refuse(f"{at}.type", f"has no {kind!r} block in a {role} message", _OPENAI)
        _check_keys(block, _BLOCK_KEYS[kind], at, _OPENAI)
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text")})
        elif kind == "image":
            parts.append(_openai_image(block.get("source"), f"{at}.source"))
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"),
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        else:
            tools.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                          "content": _tool_result_text(block.get("content"), f"{at}.content")})
    if role == "assistant":
        text = "".join(part["text"] or "" for part in parts)
        reply: Json = {"role": "assistant", "content": text or (None if calls else "")}
        if calls:
            reply["tool_calls"] = calls
        return [reply]
    return tools + ([{"role": "user", "content": parts}] if parts else [])


def _tool_result_text(content: Any, where: str) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for j, block in enumerate(_objects(content, where)):
        if block.get("type") != "text":
            raise _refuse(f"{where}[{j}].type", "takes tool results as text only", _OPENAI)
        _check_keys(block, _BLOCK_KEYS["text"], f"{where}[{j}]", _OPENAI)
        parts.append({"type": "text", "text": block.get("text")})
    return parts


def _openai_image(source: Any, where: str) -> Json:
    if not isinstance(source, dict):
        raise BadRequest(f"`{where}` must be an object.", param=where)
    url: Any
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        raise _refuse(f"{where}.type", "takes images as data or URLs, not files", _OPENAI)
    return {"type": "image_url", "image_url": {"url": url}}


def _openai_tool(tool: Json, where: str) -> Json:
    if tool.get("type") not in (None, "custom"):
        raise _refuse(f"{where}.type", f"has no server tool {tool.get('type')!r}", _OPENAI)
    _check_keys(tool, frozenset({"type", "name", "description", "input_schema",
                                 "cache_control"}), where, _OPENAI)
    function: Json = {"name": tool.get("name"), "parameters": tool.get("input_schema")}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _openai_tool_choice(choice: Any) -> tuple[Any, bool]:
    """(tool_choice, whether parallel tool calls are allowed)."""
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise _refuse("tool_choice", "chooses tools by auto, any, tool or none", _OPENAI)
    parallel = not choice.get("disable_parallel_tool_use")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}[kind], parallel
