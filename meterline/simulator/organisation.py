"""A simulated organisation: who calls which models, when, and with what token mix.

``Organisation.demo(seed)`` builds teams, developers, keys, repositories and
tools; ``envelopes(start, end)`` yields the envelopes their work would produce
over that range, in time order, reproducibly from the seed. The traffic has
what real coding-agent traffic has:

- working hours in the organisation's time zone, quiet nights and weekends;
- coding agents (Claude Code, Codex CLI) resending large contexts with heavy
  cache reads, editors (Cursor) sending shorter ones, scripts using the SDKs;
- a mix of frontier and small models, reasoning models with reasoning tokens,
  embeddings, a self-hosted model without a public price (``unpriced``),
  a contractor key whose team is not in the configuration (``unattributed``),
  and a small share of upstream errors.

It feeds the volume benchmarks (straight onto the envelopes topic), the report
and alert tests (through the real enrichment into ClickHouse) and the demo.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from meterline.schemas import BodyAudit, Envelope, Surface, Usage


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How one model is called: surface, provider, and typical token counts."""

    model: str
    provider: str
    surface: Surface
    context_tokens: int
    output_tokens: int
    cache_share: float = 0.0
    reasoning_share: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolProfile:
    tool: str
    user_agent: str
    models: tuple[ModelProfile, ...]
    calls_per_hour: float


_SONNET = ModelProfile("claude-sonnet-4-5", "anthropic", "anthropic.messages", 42_000, 900, 0.85)
_HAIKU = ModelProfile("claude-haiku-4-5", "anthropic", "anthropic.messages", 9_000, 300, 0.6)
_OPUS = ModelProfile("claude-opus-4-1", "anthropic", "anthropic.messages", 60_000, 1_400, 0.8)
_GPT5 = ModelProfile("gpt-5", "openai", "openai.responses", 30_000, 1_200, 0.5, 0.6)
_MINI = ModelProfile("gpt-4o-mini", "openai", "openai.chat", 3_000, 250, 0.2)
_GPT41 = ModelProfile("gpt-4.1", "openai", "openai.chat", 12_000, 600, 0.4)
_EMBED = ModelProfile("text-embedding-3-small", "openai", "openai.embeddings", 2_000, 0)
_SELF_HOSTED = ModelProfile("acme-coder-34b", "vllm", "openai.chat", 6_000, 500)

TOOLS: tuple[ToolProfile, ...] = (
    ToolProfile("claude-code", "claude-cli/2.0.14 (external, cli)", (_SONNET, _SONNET, _HAIKU, _OPUS),
                6.0),
    ToolProfile("codex", "codex_cli_rs/0.46.0 (Linux 6.8; x86_64)", (_GPT5,), 3.0),
    ToolProfile("cursor", "Cursor/1.7.44 (linux x64)", (_MINI, _GPT41, _SONNET), 4.0),
    ToolProfile("openai-python", "OpenAI/Python 1.109.1", (_MINI, _EMBED, _SELF_HOSTED), 1.5),
)


@dataclass(frozen=True, slots=True)
class Developer:
    name: str
    team: str
    key_id: str
    repos: tuple[str, ...]
    tools: tuple[ToolProfile, ...]
    intensity: float


@dataclass(frozen=True, slots=True)
class Team:
    name: str
    cost_centre: str
    lead: str
    budget_usd: Decimal
    configured: bool = True


_TEAM_NAMES = ("platform", "payments", "data", "mobile", "search", "growth", "security", "infra")
_PEOPLE = ("alice", "bob", "chen", "dana", "emeka", "farah", "goran", "hana", "ivan", "jun",
           "kofi", "lena", "mateo", "nina", "omar", "priya", "quinn", "rosa", "sven", "tariq",
           "uma", "viktor", "wen", "ximena", "yusuf", "zoe")


class Organisation:
    """Teams and developers, and the envelopes their month of work produces."""

    def __init__(self, teams: list[Team], developers: list[Developer], *, seed: int,
                 timezone: str = "Europe/Berlin") -> None:
        self.teams = teams
        self.developers = developers
        self.seed = seed
        self.timezone = timezone

    @classmethod
    def demo(cls, seed: int = 7, *, teams: int = 3, developers_per_team: int = 4,
             timezone: str = "Europe/Berlin") -> Organisation:
        """A reproducible organisation, plus one contractor outside the configured teams."""
        rng = random.Random(seed)
        team_list = [Team(name, f"CC-{4100 + 1100 * i}", f"{_PEOPLE[i]}@example.com",
                          Decimal(1500 + 1000 * (i % 3)))
                     for i, name in enumerate(_TEAM_NAMES[:teams])]
        people = iter(_PEOPLE * 10)
        developers: list[Developer] = []
        for team in team_list:
            repos = tuple(f"acme/{team.name}-{suffix}" for suffix in ("api", "web", "infra"))
            for index in range(developers_per_team):
                name = next(people) + ("" if len(developers) < len(_PEOPLE) else str(index))
                tools = (*rng.sample(TOOLS[:3], k=rng.choice((1, 2))), TOOLS[3])
                developers.append(Developer(
                    name=name, team=team.name, key_id=f"key_{rng.getrandbits(48):012x}",
                    repos=repos[: rng.randint(1, 3)], tools=tools,
                    intensity=rng.uniform(0.3, 1.6)))
        contractors = Team("contractors", "", "", Decimal(0), configured=False)
        developers.append(Developer("extern-ltd", contractors.name, f"key_{rng.getrandbits(48):012x}",
                                    ("acme/platform-api",), (TOOLS[2],), 0.8))
        return cls(team_list, developers, seed=seed, timezone=timezone)

    def settings_overrides(self) -> dict[str, Any]:
        """``teams`` and ``users`` sections for a Settings built around this organisation."""
        return {
            "timezone": self.timezone,
            "teams": [{"name": t.name, "cost_centre": t.cost_centre, "lead": t.lead,
                       "budget_usd": str(t.budget_usd)} for t in self.teams],
            "users": [{"name": d.name, "team": d.team} for d in self.developers
                      if any(t.name == d.team for t in self.teams)],
            "providers": {
                "openai": {"kind": "openai", "base_url": "https://api.openai.com"},
                "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com"},
                "vllm": {"kind": "openai_compatible", "base_url": "http://vllm.internal:8000"},
            },
        }

    def envelopes(self, start: datetime, end: datetime, *,
                  volume: float = 1.0) -> Iterator[Envelope]:
        """Envelopes of calls made in [start, end), in time order; ``volume`` scales call counts."""
        rng = random.Random(self.seed * 1_000_003 + int(start.timestamp()))
        zone = ZoneInfo(self.timezone)
        hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while hour < end:
            local = hour.astimezone(zone)
            activity = _activity(local)
            calls: list[tuple[datetime, Developer, ToolProfile]] = []
            for developer in self.developers:
                for tool in developer.tools:
                    expected = tool.calls_per_hour * developer.intensity * activity * volume
                    for _ in range(_poisson(rng, expected)):
                        at = hour + timedelta(seconds=rng.uniform(0, 3600))
                        if start <= at < end:
                            calls.append((at, developer, tool))
            calls.sort(key=lambda call: call[0])
            for at, developer, tool in calls:
                yield _envelope(rng, at, developer, tool)
            hour += timedelta(hours=1)


def _activity(local: datetime) -> float:
    """Relative call rate for a local hour: office hours, lunch dip, quiet weekends."""
    weekday = local.weekday() < 5
    hour = local.hour
    if 9 <= hour < 18:
        level = 0.6 if hour == 12 else 1.0
    elif 7 <= hour < 9 or 18 <= hour < 21:
        level = 0.25
    else:
        level = 0.02
    return level if weekday else level * 0.08


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw by counting exponential gaps (means here are small)."""
    count, total = 0, rng.expovariate(1.0) if mean > 0 else 1.0
    while mean > 0 and total < mean:
        count += 1
        total += rng.expovariate(1.0)
    return count


def _request_id(rng: random.Random, at: datetime) -> str:
    ms = int(at.timestamp() * 1000)
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def _envelope(rng: random.Random, at: datetime, developer: Developer, tool: ToolProfile) -> Envelope:
    profile = rng.choice(tool.models)
    context = max(50, int(rng.lognormvariate(0, 0.6) * profile.context_tokens))
    cached = int(context * profile.cache_share * rng.uniform(0.7, 1.0))
    write_5m = write_1h = 0
    if profile.provider == "anthropic" and cached:
        fresh = int(context * rng.uniform(0.02, 0.1))
        write_1h, write_5m = (fresh, 0) if rng.random() < 0.2 else (0, fresh)
    uncached = max(1, context - cached - write_5m - write_1h)
    output = int(rng.lognormvariate(0, 0.7) * profile.output_tokens) if profile.output_tokens else 0
    reasoning = int(output * profile.reasoning_share)
    failed = rng.random() < 0.015
    status = rng.choice((429, 500, 529 if profile.provider == "anthropic" else 503)) if failed else 200
    upstream_ms = rng.lognormvariate(0, 0.5) * (900 + output * 12)
    usage = (Usage(source="missing") if failed else
             Usage(input_tokens=uncached, output_tokens=output, cache_read_tokens=cached,
                   cache_write_5m_tokens=write_5m, cache_write_1h_tokens=write_1h,
                   reasoning_tokens=reasoning, source="provider"))
    done = at + timedelta(milliseconds=upstream_ms + 1)
    stream = profile.surface != "openai.embeddings" and rng.random() < 0.8
    repo = rng.choice(developer.repos)
    repo_source = "header" if tool.tool == "claude-code" else rng.choice(("metadata", "key_default"))
    return Envelope(
        request_id=_request_id(rng, at), received_at=at,
        first_byte_at=None if failed else at + timedelta(milliseconds=upstream_ms * 0.2),
        done_at=done, surface=profile.surface, provider=profile.provider,
        requested_model=profile.model, served_model=profile.model, key_id=developer.key_id,
        user=developer.name, team=developer.team, repo=repo, repo_source=repo_source,
        tool=tool.tool, user_agent=tool.user_agent, status=status,
        outcome="upstream_error" if failed else "ok",
        error_class=f"http_{status}" if failed else "", stream=stream, usage=usage,
        upstream_ms=round(upstream_ms, 3), gateway_ms=round(rng.uniform(0.2, 0.9), 3),
        request_bytes=context * 4, response_bytes=output * 4 + 200,
        body=BodyAudit(policy="hash", request_sha256=f"{rng.getrandbits(256):064x}",
                       response_sha256=f"{rng.getrandbits(256):064x}"),
    )
