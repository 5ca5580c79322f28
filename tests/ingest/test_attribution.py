"""Attribution: the tool from its User-Agent, the repo by precedence."""

from __future__ import annotations

import pytest

from meterline.ingest.attribution import resolve_repo, tool_from_user_agent
from meterline.schemas import KeySettings


@pytest.mark.parametrize(("user_agent", "tool"), [
    ("claude-cli/2.0.14 (external, cli)", "claude-code"),
    ("codex_cli_rs/0.46.0 (Mac OS 15.1; arm64) iTerm.app", "codex"),
    ("Cursor/1.7.0", "cursor"),
    ("OpenAI/Python 2.3.0", "openai-python"),
    ("AsyncOpenAI/Python 2.3.0", "openai-python"),
    ("Anthropic/Python 0.69.0", "anthropic-python"),
    ("Anthropic/JS 0.65.0", "anthropic-js"),
    ("curl/8.5.0", "curl"),
    ("something-else/1", "other"),
    ("", "unknown"),
])
def test_tool_from_user_agent(user_agent: str, tool: str) -> None:
    assert tool_from_user_agent(user_agent) == tool


KEY = KeySettings(id="key_0123456789ab", sha256="0" * 64, user="u", team="t", repo="acme/default")


def test_repo_precedence_header_metadata_key() -> None:
    body = {"metadata": {"repo": "acme/meta"}}
    assert resolve_repo(" acme/header ", body, KEY) == ("acme/header", "header")
    assert resolve_repo(None, body, KEY) == ("acme/meta", "metadata")
    assert resolve_repo(None, {"metadata": {"user_id": "x"}}, KEY) == ("acme/default", "key_default")
    assert resolve_repo(None, None, KEY.model_copy(update={"repo": ""})) == ("", "unknown")
