"""The envelope: one record per upstream call, written by the gateway.

An envelope is produced after the response ends, fails, or the client leaves.
It carries what the gateway observed and nothing it had to guess, except usage
whose ``source`` then says ``estimated``. It never carries a secret: the virtual
key appears only as its id, provider keys never at all, and bodies only as the
audit policy allows.

Compatibility: ``schema_version`` is ``MAJOR.MINOR``. Minor versions only add
optional fields; consumers reject an unknown major version to the dead-letter
topic (see ``check_schema_version``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .egress import BodyPolicy, PolicyBreach

ENVELOPE_SCHEMA_VERSION = "1.4"
SUPPORTED_MAJOR = 1

Surface = Literal[
    "openai.chat",
    "openai.responses",
    "openai.embeddings",
    "openai.models",
    "anthropic.messages",
    "anthropic.count_tokens",
]
Outcome = Literal["ok", "upstream_error", "upstream_timeout", "client_disconnect", "gateway_error"]
UsageSource = Literal["provider", "estimated", "missing"]
RepoSource = Literal["header", "metadata", "key_default", "unknown"]


class UnsupportedSchemaVersion(ValueError):
    """A message's schema version has a major version this code does not know."""


def check_schema_version(version: str) -> None:
    """Raise ``UnsupportedSchemaVersion`` unless ``version`` has a supported major."""
    major, _, _ = version.partition(".")
    if not major.isdigit() or int(major) != SUPPORTED_MAJOR:
        raise UnsupportedSchemaVersion(
            f"schema_version {version!r} not supported (this build reads {SUPPORTED_MAJOR}.x)"
        )


class Usage(BaseModel):
    """Token counts as the provider reported them (or as estimated, or missing).

    ``input_tokens`` excludes cached reads and cache writes, which are counted
    separately, because providers price them differently. ``reasoning_tokens``
    is a subset of ``output_tokens`` kept for visibility, never priced twice.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    cache_read_tokens: int = Field(0, ge=0)
    cache_write_5m_tokens: int = Field(0, ge=0)
    cache_write_1h_tokens: int = Field(0, ge=0)
    reasoning_tokens: int = Field(0, ge=0)
    source: UsageSource = "missing"
    #: The service tier the provider says the call ran at (1.2), which it prices apart:
    #: OpenAI's ``flex``, ``priority``, ``scale``; "" for the default tier or when unreported.
    service_tier: str = ""

    @property
    def total_tokens(self) -> int:
        """Every token billed: input, cache reads and writes, and output."""
        return (self.input_tokens + self.cache_read_tokens + self.cache_write_5m_tokens
                + self.cache_write_1h_tokens + self.output_tokens)


class BodyAudit(BaseModel):
    """What the audit policy allowed to keep of the bodies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: BodyPolicy = "hash"
    request_sha256: str | None = None
    response_sha256: str | None = None
    request: str | None = None
    response: str | None = None
    #: Content addresses of the request's messages, in order (1.1): bodies kept by
    #: the policy, and findings, are stored once per message under these.
    request_messages: list[str] = Field(default_factory=list)


class Attempt(BaseModel):
    """A target tried before the one the envelope describes (1.3): it failed before any
    byte reached the client, so the call moved on (docs/routing.md).

    ``status`` is the provider's (429, 529 ...) or, when it never answered, the
    gateway's (502 unreachable, 504 timeout); 0 for a target skipped because its
    circuit breaker was open (``error_class`` ``breaker_open``, never sent). An
    attempt carries no usage: the providers bill none of these.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    model: str
    status: int = 0
    error_class: str = ""
    upstream_ms: float = 0.0


class Routing(BaseModel):
    """What routing rules made of the call (1.4, docs/routing.md); absent when none matched.

    ``rule`` is the ``enforce`` rule that sent the call to its target ("" when only a
    shadow rule matched), and ``from_provider``/``from_model`` where the requested
    model would have gone without rules: what the counterfactual cost is priced
    on. ``shadow_rule`` is the first ``shadow`` rule that matched, and
    ``shadow_provider``/``shadow_model`` where it would have sent the call.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = ""
    from_provider: str = ""
    from_model: str = ""
    shadow_rule: str = ""
    shadow_provider: str = ""
    shadow_model: str = ""


class Envelope(BaseModel):
    """One upstream call as the gateway saw it. Field names are the contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = ENVELOPE_SCHEMA_VERSION
    request_id: str
    received_at: datetime
    first_byte_at: datetime | None = None
    done_at: datetime

    surface: Surface
    provider: str
    requested_model: str
    served_model: str

    key_id: str
    user: str
    team: str
    repo: str = ""
    repo_source: RepoSource = "unknown"
    tool: str = "unknown"
    user_agent: str = ""

    status: int
    outcome: Outcome
    error_class: str = ""
    stream: bool = False

    usage: Usage = Usage()

    upstream_ms: float = 0.0
    gateway_ms: float = 0.0
    request_bytes: int = 0
    response_bytes: int = 0

    body: BodyAudit = BodyAudit()
    #: Egress rules the call broke (1.1); a refused call has them ``enforced``.
    breaches: list[PolicyBreach] = Field(default_factory=list)
    #: The targets tried before the one that served (1.3), in order; empty when the
    #: first one did. ``provider`` and ``served_model`` are always the serving one's.
    attempts: list[Attempt] = Field(default_factory=list)
    #: The routing rules that matched (1.4); None when none did, the usual case.
    routing: Routing | None = None
