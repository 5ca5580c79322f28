"""Egress policy: its configuration and the records it puts on the wire.

Security's question is what leaves the organisation, to which provider, from
which repository, and whether anything that must not leave did. The rollout
is audit first, enforce later: every rule runs in ``audit`` mode (the call
passes, the breach is recorded on its envelope and event, and as an anomaly)
until an operator switches it, or the whole policy, to ``enforce`` (the
gateway refuses the call before it leaves, in the client's API error format).

Configuration (``Settings.egress``)::

    egress:
      mode: audit                      # audit | enforce, rules may override
      unknown_repos: {providers: [anthropic]}   # what a repo no rule matches may use
      rules:
        - name: payments-restricted
          repos: ["acme/payments*"]    # fnmatch patterns on the attributed repo
          classification: restricted
          providers: [vllm]            # allowed providers (empty: any)
          models: ["acme-*"]           # allowed served models (empty: any)
          body_policy: none            # overrides the team's audit body policy
          mode: enforce
      sensitive: {mode: audit}         # secrets and PII in prompts: off | audit | enforce
      exceptions:
        - {rule: payments-restricted, users: [alice], until: 2026-12-31, reason: "SEC-42"}

Wire records: ``PolicyBreach`` rides on the envelope; ``AuditMessage`` (one
distinct request message, its text sealed with ``egress.body_key``) goes from
the gateway to the processors; ``MessageScan`` (what the scan found, and the
text as the body policy allows) from the processors to the store.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

BodyPolicy = Literal["none", "hash", "redacted", "full"]
PolicyMode = Literal["audit", "enforce"]
SensitiveMode = Literal["off", "audit", "enforce"]
BreachKind = Literal["provider_not_allowed", "model_not_allowed", "sensitive_data"]

#: The pseudo-rule sensitive-data findings are reported (and excepted) under.
SENSITIVE_RULE = "sensitive-data"
#: The rule name a repo matched by no rule is judged under.
UNKNOWN_REPO_RULE = "unknown-repos"
MESSAGE_SCHEMA_VERSION = "1.0"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AllowList(_Section):
    """Providers and served-model patterns a repository may send to; empty means any."""

    providers: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)

    def refusal(self, provider: str, model: str) -> tuple[BreachKind, str] | None:
        """Why (provider, model) is not allowed here, or None when it is."""
        if self.providers and provider not in self.providers:
            return ("provider_not_allowed",
                    f"provider '{provider}' is not allowed (allowed: {', '.join(self.providers)})")
        if self.models and not any(fnmatchcase(model, pattern) for pattern in self.models):
            return ("model_not_allowed",
                    f"model '{model}' is not allowed (allowed: {', '.join(self.models)})")
        return None


class RepoRule(AllowList):
    """Repositories (fnmatch patterns, or a data classification's patterns) and what they may use."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    repos: list[str] = Field(min_length=1)
    classification: str = ""
    body_policy: BodyPolicy | None = None
    mode: PolicyMode | None = None

    def matches(self, repo: str) -> bool:
        return any(fnmatchcase(repo, pattern) for pattern in self.repos)


class PolicyException(_Section):
    """An allow-exception: the rule does not apply to these repos, teams or users (all
    given lists must match), until the date (inclusive), for the reason recorded."""

    rule: str = Field(min_length=1)
    repos: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    #: Sensitive-data exceptions only: the finding kinds excepted (empty: all).
    kinds: list[str] = Field(default_factory=list)
    until: date | None = None
    reason: str = Field(min_length=1)

    def covers(self, rule: str, *, repo: str, team: str, user: str, today: date,
               kind: str = "") -> bool:
        return (self.rule == rule
                and (not self.repos or any(fnmatchcase(repo, pattern) for pattern in self.repos))
                and (not self.teams or team in self.teams)
                and (not self.users or user in self.users)
                and (not self.kinds or kind in self.kinds)
                and (self.until is None or today <= self.until))


class SensitiveSettings(_Section):
    """Secrets and PII in prompts. ``audit`` scans in the processors, off the request
    path; ``enforce`` also scans inline and refuses a prompt holding a finding."""

    mode: SensitiveMode = "audit"
    #: Detector kinds to run (see ``meterline.policy.sensitive``); None: the defaults.
    kinds: list[str] | None = None


class EgressSettings(_Section):
    mode: PolicyMode = "audit"
    rules: list[RepoRule] = Field(default_factory=list)
    unknown_repos: AllowList = AllowList()
    exceptions: list[PolicyException] = Field(default_factory=list)
    sensitive: SensitiveSettings = SensitiveSettings()
    #: Kept bodies expire after this many days, per policy.
    retention_days: dict[str, int] = Field(
        default_factory=lambda: {"redacted": 90, "full": 30})
    #: The gateway remembers this many message hashes it already sent (per process):
    #: a conversation resent every turn ships each message once.
    seen_messages: int = Field(200_000, ge=0)
    #: AES-256-GCM key (base64 of 32 bytes) sealing message text on its way through
    #: Kafka; from the environment only (``METERLINE_EGRESS__BODY_KEY``).
    body_key: SecretStr | None = None

    def body_policy(self, repo: str, team_policy: BodyPolicy) -> BodyPolicy:
        """The repo's rule's body policy if it sets one, else the team's."""
        rule = self.rule_for(repo)
        return rule.body_policy if rule is not None and rule.body_policy else team_policy

    @field_validator("body_key")
    @classmethod
    def _key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # unset (an empty environment variable too): nothing is shipped
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValueError("must be base64 of 32 random bytes, e.g. the output of: python3 -c "
                             "'import base64,os;print(base64.b64encode(os.urandom(32)).decode())'")
        return value

    @field_validator("retention_days")
    @classmethod
    def _kept_policies(cls, value: dict[str, int]) -> dict[str, int]:
        wrong = sorted(set(value) - {"redacted", "full"})
        if wrong or any(days < 1 for days in value.values()):
            raise ValueError("retention_days maps 'redacted' and 'full' to whole days (>= 1)"
                             + (f"; unknown: {wrong}" if wrong else ""))
        return {"redacted": 90, "full": 30, **value}

    @model_validator(mode="after")
    def _names_resolve(self) -> EgressSettings:
        names = [rule.name for rule in self.rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"egress.rules: duplicate rule names {duplicates}")
        known = {*names, SENSITIVE_RULE, UNKNOWN_REPO_RULE}
        for index, exception in enumerate(self.exceptions):
            if exception.rule not in known:
                raise ValueError(f"egress.exceptions.{index}: unknown rule {exception.rule!r} "
                                 f"(known: {', '.join(sorted(known))})")
        return self

    def rule_for(self, repo: str) -> RepoRule | None:
        """The first rule whose patterns match ``repo`` (rules are ordered, first wins)."""
        return next((rule for rule in self.rules if rule.matches(repo)), None)


class PolicyBreach(BaseModel):
    """One rule the call broke. ``enforced`` calls were refused; ``excepted`` ones were
    allowed by an exception (recorded, not counted as breaches)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    kind: BreachKind
    detail: str
    enforced: bool = False
    excepted: bool = False


class MessageContext(BaseModel):
    """One distinct request message: where it came from and where it went.

    The first call that sent it names it (``request_id``, ``index``); later
    calls that resend it carry only its address (``message_hash``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = MESSAGE_SCHEMA_VERSION
    message_hash: str
    request_id: str
    index: int
    role: str
    chars: int
    at: datetime
    team: str
    user: str
    repo: str
    provider: str
    model: str
    body_policy: BodyPolicy


class AuditMessage(MessageContext):
    """A message on its way from the gateway to the scan.

    ``sealed`` is the message text encrypted with ``egress.body_key`` (AES-GCM,
    nonce first, base64): the text itself never sits in Kafka or the spool.
    ``scan`` is false when the sensitive-data scan is off (the text travels
    only because the body policy keeps it).
    """

    sealed: str
    scan: bool


class SensitiveSpan(BaseModel):
    """Where a finding is: never the matched value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    category: Literal["secret", "pii"]
    detector: str
    start: int
    end: int
    excepted: bool = False


class MessageScan(MessageContext):
    """A message as scanned: its findings, and its text if the body policy keeps one
    (``redacted``: findings replaced by ``[REDACTED:kind]``; ``full``: as sent)."""

    findings: list[SensitiveSpan] = Field(default_factory=list)
    text: str | None = None
