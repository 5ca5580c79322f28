"""Which egress rules a call breaks: repository allowlists, per provider and model.

``EgressPolicy.judge`` runs on the gateway's request path, before the call
leaves, so it is a few dictionary and ``fnmatch`` lookups, nothing more. It
finds the first rule (``egress.rules``, in order) whose repository patterns
match the call's attributed repository, or the ``unknown-repos`` allowlist
when none does, and returns the breach if the provider or served model is
not allowed there. The breach says what the operator set:

- ``enforced``: the rule's mode (else ``egress.mode``) is ``enforce`` and no
  exception covers the call: the gateway refuses it before it leaves;
- ``excepted``: an ``egress.exceptions`` entry covers the call: it passes and
  the breach is recorded as excepted (the policy report counts both);
- neither: audit mode: the call passes, the breach is recorded on the event
  and as an anomaly, and the policy report counts what enforcement would block.
"""

from __future__ import annotations

from datetime import date

from meterline.schemas import (
    SENSITIVE_RULE,
    UNKNOWN_REPO_RULE,
    BodyPolicy,
    EgressSettings,
    PolicyBreach,
    PolicyMode,
    Settings,
)


class EgressPolicy:
    """The egress rules of one ``Settings``; immutable, shared by every request."""

    def __init__(self, egress: EgressSettings, team_body_policies: dict[str, BodyPolicy],
                 default_body_policy: BodyPolicy) -> None:
        self._egress = egress
        self._team_body_policies = team_body_policies
        self._default_body_policy = default_body_policy

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        """The policy of ``settings.egress``, with the teams' body policies and the default."""
        return cls(settings.egress,
                   {team.name: team.body_policy for team in settings.teams if team.body_policy},
                   settings.gateway.audit_body_policy)

    def judge(self, *, repo: str, team: str, user: str, provider: str, model: str,
              today: date) -> PolicyBreach | None:
        """The breach of sending (provider, model) from ``repo``, or None."""
        rule = self._egress.rule_for(repo)
        allow = rule if rule is not None else self._egress.unknown_repos
        refusal = allow.refusal(provider, model)
        if refusal is None:
            return None
        kind, reason = refusal
        name = rule.name if rule is not None else UNKNOWN_REPO_RULE
        mode: PolicyMode = (rule.mode if rule is not None and rule.mode else self._egress.mode)
        where = f"repository '{repo}'" if repo else "a call with no repository"
        label = f" ({rule.classification})" if rule is not None and rule.classification else ""
        detail = f"egress rule '{name}'{label}: {where}: {reason}"
        excepted = self.excepted(name, repo=repo, team=team, user=user, today=today)
        return PolicyBreach(rule=name, kind=kind, detail=detail, excepted=excepted,
                            enforced=mode == "enforce" and not excepted)

    def excepted(self, rule: str, *, repo: str, team: str, user: str, today: date,
                 kind: str = "") -> bool:
        """Whether an ``egress.exceptions`` entry lets this call (or finding kind) through."""
        return any(exception.covers(rule, repo=repo, team=team, user=user, today=today, kind=kind)
                   for exception in self._egress.exceptions)

    def sensitive_excepted(self, kind: str, *, repo: str, team: str, user: str,
                           today: date) -> bool:
        return self.excepted(SENSITIVE_RULE, repo=repo, team=team, user=user, today=today,
                             kind=kind)

    def body_policy(self, repo: str, team: str) -> BodyPolicy:
        """What the audit trail keeps of this call's bodies: the repo's rule, the team, the default."""
        team_policy = self._team_body_policies.get(team, self._default_body_policy)
        return self._egress.body_policy(repo, team_policy)
