"""Tool calls of the simulated provider: deterministic, from the request.

A request whose ``tool_choice`` asks for a tool (OpenAI ``required`` or a
named function, Anthropic ``any`` or a named tool) is answered with a call to
one of them, unless the conversation ends with a tool's result (then the
answer is text: the model answers with what the tool found). A request that
merely offers tools is answered with text: agents such as Claude Code and
Codex CLI offer tools on every call, and a simulated model that always
called one would send them into loops of tool calls (tests/e2e/
test_agents_rate_limit.py). The tool called is the one ``tool_choice``
names, else the first offered. Its input fills each
required property of the tool's schema: strings with words derived from the
prompt, numbers with 1, booleans with true. Same request, same call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .text import answer

_FILLERS: dict[str, Any] = {"integer": 1, "number": 1, "boolean": True, "array": [],
                            "object": {}}


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # the input, as JSON text

    @property
    def pieces(self) -> tuple[str, str]:
        """The arguments in two pieces, as a stream delivers them."""
        half = len(self.arguments) // 2
        return self.arguments[:half], self.arguments[half:]

    @property
    def input(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.arguments)
        return parsed


def tool_call(tools: list[tuple[Any, Any]], forced: Any, prompt: str) -> ToolCall:
    """The call to make among ``tools`` ((name, JSON schema) pairs, at least one)."""
    name, schema = next(((n, s) for n, s in tools if n == forced), tools[0])
    schema = schema if isinstance(schema, dict) else {}
    properties = schema.get("properties") or {}
    filled = {key: _FILLERS.get(str((properties.get(key) or {}).get("type")), answer(prompt, 3))
              for key in schema.get("required") or []}
    return ToolCall(str(name), orjson.dumps(filled).decode())
