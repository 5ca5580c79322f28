"""Request bodies as content-addressed messages, per API surface; sealing."""

from __future__ import annotations

import pytest

from meterline.policy.messages import message_hash, request_messages
from meterline.policy.seal import Sealer, SealError, new_key


def test_anthropic_system_then_messages_with_tool_blocks() -> None:
    payload = {"system": [{"type": "text", "text": "You are Claude Code.",
                           "cache_control": {"type": "ephemeral"}}],
               "messages": [
                   {"role": "user", "content": "run the tests"},
                   {"role": "assistant", "content": [
                       {"type": "tool_use", "id": "tu_1", "name": "bash",
                        "input": {"command": "pytest -q"}}]},
                   {"role": "user", "content": [
                       {"type": "tool_result", "tool_use_id": "tu_1", "content": "3 passed"}]}]}
    messages = request_messages("anthropic.messages", payload)
    assert [(m.index, m.role) for m in messages] == [(0, "system"), (1, "user"),
                                                    (2, "assistant"), (3, "user")]
    assert messages[0].text == "You are Claude Code."
    assert messages[2].text == "bash\npytest -q"  # ids and types are structure, not text
    assert messages[3].text == "3 passed"


def test_openai_surfaces() -> None:
    chat = request_messages("openai.chat", {"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert [(m.role, m.text) for m in chat] == [("system", "be brief"), ("user", "hi")]
    responses = request_messages("openai.responses", {"instructions": "sys", "input": "hello"})
    assert [(m.role, m.text) for m in responses] == [("system", "sys"), ("user", "hello")]
    embeddings = request_messages("openai.embeddings", {"input": ["a", "b"]})
    assert [m.text for m in embeddings] == ["a", "b"]
    assert request_messages("openai.embeddings", {"input": [1, 2, 3]})[0].text == ""
    assert request_messages("openai.models", {}) == []


def test_address_is_canonical_and_stable_across_turns() -> None:
    first = {"role": "user", "content": "fix the bug"}
    assert message_hash(first) == message_hash({"content": "fix the bug", "role": "user"})
    assert message_hash(first) != message_hash({"role": "user", "content": "fix the bug!"})
    turn1 = request_messages("openai.chat", {"messages": [first]})
    turn2 = request_messages("openai.chat", {"messages": [
        first, {"role": "assistant", "content": "done"}, {"role": "user", "content": "thanks"}]})
    assert turn2[0].message_hash == turn1[0].message_hash
    assert len(turn1[0].message_hash) == 32
    marked = {"role": "user", "content": [{"type": "text", "text": "fix the bug",
                                           "cache_control": {"type": "ephemeral"}}]}
    unmarked = {"role": "user", "content": [{"type": "text", "text": "fix the bug"}]}
    assert message_hash(marked) == message_hash(unmarked)  # the moving cache marker


def test_sealed_text_opens_only_with_its_key_and_address() -> None:
    sealer = Sealer(new_key())
    sealed = sealer.seal("password = hunter2", "abc")
    assert "hunter2" not in sealed
    assert sealer.open(sealed, "abc") == "password = hunter2"
    with pytest.raises(SealError):
        sealer.open(sealed, "abd")
    with pytest.raises(SealError):
        Sealer(new_key()).open(sealed, "abc")
    with pytest.raises(SealError, match="32 bytes"):
        Sealer("c2hvcnQ=")
