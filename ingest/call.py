"""One call's record, from arrival to its envelope.

A ``CallRecord`` is created once the caller is authenticated and filled in
as the call proceeds; ``CallRecord.envelope`` turns it into the immutable
``Envelope`` exactly once, when the response has ended, failed, or the client
left. Only the key's *id* is recorded, never the key, and bodies only as the
audit policy allows (hashes by default).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from meterline.policy.messages import RequestMessage
from meterline.schemas import (
    Attempt,
    BodyAudit,
    BodyPolicy,
    Envelope,
    KeySettings,
    Outcome,
    PolicyBreach,
    RepoSource,
    Routing,
    Surface,
    Usage,
)

from .attribution import tool_from_user_agent

#: Left out of the envelope when empty: validating an empty field costs every call.
_NOTHING: dict[str, Any] = {}


@dataclass(slots=True)
class CallRecord:
    """What is known about one call so far; becomes its envelope at the end."""

    request_id: str
    received_at: datetime
    started_ns: int
    surface: Surface
    key: KeySettings
    user_agent: str
    repo: str = ""
    repo_source: RepoSource = "unknown"
    provider: str = ""
    requested_model: str = ""
    served_model: str = ""
    stream: bool = False
    request_bytes: int = 0
    request_sha256: str = ""
    payload: dict[str, Any] | None = None
    first_byte_at: datetime | None = None
    upstream_started_ns: int = 0
    upstream_first_byte_ns: int = 0
    response_hash: Any = field(default_factory=hashlib.sha256)
    response_bytes: int = 0
    #: Set by the egress gate: the message addresses, the body policy, the rules broken.
    request_messages: list[str] = field(default_factory=list)
    body_policy: BodyPolicy | None = None
    breaches: list[PolicyBreach] = field(default_factory=list)
    messages: list[RequestMessage] = field(default_factory=list)
    #: The enforcement ledger holds a reservation for this call (``Enforcer``).
    admitted: bool = False
    #: The targets tried before the serving one (``fallback``); a tuple, so a call that
    #: never falls back allocates nothing for it.
    attempts: tuple[Attempt, ...] = ()
    #: What routing rules made of the call (``rules``); None when none matched.
    routing: Routing | None = None

    def envelope(self, *, status: int, outcome: Outcome, usage: Usage, policy: BodyPolicy,
                 error_class: str = "", served_model: str = "") -> tuple[Envelope, float]:
        """The call's envelope and the seconds the gateway added to it.

        Added time is the call's wall time minus the time spent waiting on the
        upstream (request sent to response finished), so a slow provider does
        not read as a slow gateway.
        """
        end_ns = time.perf_counter_ns()
        upstream_ms = (end_ns - self.upstream_started_ns) / 1e6 if self.upstream_started_ns else 0.0
        total_ms = (end_ns - self.started_ns) / 1e6
        gateway_ms = max(total_ms - upstream_ms, 0.0)
        policy = self.body_policy or policy
        if policy == "none":
            body = BodyAudit(policy=policy)
        else:
            body = BodyAudit(policy=policy, request_sha256=self.request_sha256 or None,
                             response_sha256=self.response_hash.hexdigest(),
                             request_messages=self.request_messages)
        envelope = Envelope(
            request_id=self.request_id, received_at=self.received_at,
            first_byte_at=self.first_byte_at, done_at=datetime.now(UTC),
            surface=self.surface, provider=self.provider,
            requested_model=self.requested_model,
            served_model=served_model or self.served_model,
            key_id=self.key.id, user=self.key.user, team=self.key.team,
            repo=self.repo, repo_source=self.repo_source,
            tool=tool_from_user_agent(self.user_agent), user_agent=self.user_agent[:256],
            status=status, outcome=outcome, error_class=error_class, stream=self.stream,
            usage=usage, upstream_ms=round(upstream_ms, 3), gateway_ms=round(gateway_ms, 3),
            request_bytes=self.request_bytes, response_bytes=self.response_bytes, body=body,
            breaches=self.breaches,
            # passed only when there are some: validating an empty list costs every call
            **({"attempts": list(self.attempts)} if self.attempts else _NOTHING),
            **({"routing": self.routing} if self.routing is not None else _NOTHING),
        )
        return envelope, gateway_ms / 1000
