"""Attribution: which tool made a call, and for which repository.

Repo precedence, recorded in ``repo_source``: an explicit ``x-meterline-repo``
header (Claude Code sends it via ``ANTHROPIC_CUSTOM_HEADERS``), then request
metadata (``metadata.repo`` in the body), then the key's default repo.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from meterline.schemas import KeySettings, RepoSource

REPO_HEADER = "x-meterline-repo"

# Ordered: the first substring found in the lower-cased User-Agent wins, so more
# specific products come before the SDKs they are built on.
_TOOLS: tuple[tuple[str, str], ...] = (
    ("claude-cli", "claude-code"),
    ("claude-code", "claude-code"),
    ("codex", "codex"),
    ("cursor", "cursor"),
    ("aider", "aider"),
    ("continue", "continue"),
    ("cline", "cline"),
    ("roo-code", "roo-code"),
    ("windsurf", "windsurf"),
    ("gemini-cli", "gemini-cli"),
    ("opencode", "opencode"),
    ("goose", "goose"),
    ("zed/", "zed"),
    ("anthropic/python", "anthropic-python"),
    ("anthropic/js", "anthropic-js"),
    ("anthropic/typescript", "anthropic-js"),
    ("anthropictypescript", "anthropic-js"),
    ("openai/python", "openai-python"),
    ("openai/js", "openai-js"),
    ("asyncopenai/python", "openai-python"),
    ("litellm", "litellm"),
    ("langchain", "langchain"),
    ("python-httpx", "httpx"),
    ("python-requests", "requests"),
    ("aiohttp", "aiohttp"),
    ("curl/", "curl"),
)


@lru_cache(maxsize=4096)  # a fleet sends few distinct User-Agents; this runs per call
def tool_from_user_agent(user_agent: str) -> str:
    """The tool behind a User-Agent; ``unknown`` when absent, ``other`` when unrecognised."""
    lowered = user_agent.lower()
    for needle, tool in _TOOLS:
        if needle in lowered:
            return tool
    return "unknown" if not user_agent else "other"


def resolve_repo(header_value: str | None, body: dict[str, Any] | None,
                 key: KeySettings) -> tuple[str, RepoSource]:
    """The repo of a call and how it was known, by the precedence above."""
    if header_value:
        return header_value.strip(), "header"
    metadata = body.get("metadata") if isinstance(body, dict) else None
    if isinstance(metadata, dict):
        repo = metadata.get("repo")
        if isinstance(repo, str) and repo:
            return repo, "metadata"
    if key.repo:
        return key.repo, "key_default"
    return "", "unknown"
