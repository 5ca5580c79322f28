"""Egress rules: first match wins, unknown repos get the default, exceptions and modes."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from meterline.policy.rules import EgressPolicy
from meterline.schemas import EgressSettings, Settings

TODAY = date(2026, 11, 23)
RULES = [
    {"name": "payments", "repos": ["acme/payments*", "acme/ledger"], "classification": "restricted",
     "providers": ["anthropic"], "models": ["claude-haiku*"], "body_policy": "none",
     "mode": "enforce"},
    {"name": "internal", "repos": ["acme/*"], "providers": ["anthropic", "openai"]},
]


def _policy(**egress: object) -> EgressPolicy:
    settings = EgressSettings.model_validate({"rules": RULES, **egress})
    return EgressPolicy(settings, {"data": "full"}, "hash")


def _judge(policy: EgressPolicy, repo: str, provider: str, model: str, user: str = "bob",
           team: str = "payments", today: date = TODAY) -> object:
    return policy.judge(repo=repo, team=team, user=user, provider=provider, model=model,
                        today=today)


def test_first_matching_rule_decides() -> None:
    policy = _policy()
    assert _judge(policy, "acme/payments-api", "anthropic", "claude-haiku-4-5") is None
    breach = policy.judge(repo="acme/ledger", team="t", user="u", provider="openai",
                          model="gpt-4o", today=TODAY)
    assert breach is not None
    assert (breach.rule, breach.kind, breach.enforced) == ("payments", "provider_not_allowed", True)
    assert "(restricted)" in breach.detail and "allowed: anthropic" in breach.detail
    model = policy.judge(repo="acme/payments", team="t", user="u", provider="anthropic",
                         model="claude-opus-4", today=TODAY)
    assert model is not None and model.kind == "model_not_allowed"
    # acme/docs is matched by the second rule, in the policy's mode (audit)
    audit = policy.judge(repo="acme/docs", team="t", user="u", provider="vllm", model="x",
                         today=TODAY)
    assert audit is not None and (audit.rule, audit.enforced) == ("internal", False)


def test_unknown_repos_default_and_empty_repo() -> None:
    assert _judge(_policy(), "other/thing", "vllm", "m") is None  # default: anything
    policy = _policy(unknown_repos={"providers": ["anthropic"]}, mode="enforce")
    breach = policy.judge(repo="", team="t", user="u", provider="openai", model="m", today=TODAY)
    assert breach is not None
    assert (breach.rule, breach.enforced) == ("unknown-repos", True)
    assert "a call with no repository" in breach.detail


def test_exceptions_by_user_repo_and_date() -> None:
    policy = _policy(exceptions=[
        {"rule": "payments", "users": ["alice"], "until": "2026-11-30", "reason": "SEC-42"},
        {"rule": "payments", "repos": ["acme/ledger"], "teams": ["finance"], "reason": "audit"}])
    excepted = policy.judge(repo="acme/payments", team="t", user="alice", provider="openai",
                            model="gpt", today=TODAY)
    assert excepted is not None and excepted.excepted and not excepted.enforced
    expired = policy.judge(repo="acme/payments", team="t", user="alice", provider="openai",
                           model="gpt", today=date(2026, 12, 1))
    assert expired is not None and expired.enforced
    both = policy.judge(repo="acme/ledger", team="finance", user="x", provider="openai",
                        model="gpt", today=TODAY)
    assert both is not None and both.excepted
    only_one = policy.judge(repo="acme/ledger", team="sales", user="x", provider="openai",
                            model="gpt", today=TODAY)
    assert only_one is not None and only_one.enforced


def test_sensitive_exceptions_by_kind() -> None:
    policy = _policy(exceptions=[{"rule": "sensitive-data", "kinds": ["email"],
                                  "repos": ["acme/crm*"], "reason": "customer e-mails are the job"}])
    assert policy.sensitive_excepted("email", repo="acme/crm-api", team="t", user="u", today=TODAY)
    assert not policy.sensitive_excepted("aws_access_key", repo="acme/crm-api", team="t",
                                         user="u", today=TODAY)
    assert not policy.sensitive_excepted("email", repo="acme/api", team="t", user="u",
                                         today=TODAY)


def test_body_policy_rule_then_team_then_default() -> None:
    policy = _policy()
    assert policy.body_policy("acme/payments-api", "data") == "none"  # the rule
    assert policy.body_policy("acme/docs", "data") == "full"          # the team
    assert policy.body_policy("acme/docs", "web") == "hash"           # the gateway default


@pytest.mark.parametrize(("egress", "message"), [
    ({"rules": [RULES[1], RULES[1]]}, "duplicate rule names"),
    ({"exceptions": [{"rule": "nope", "reason": "x"}]}, "unknown rule 'nope'"),
    ({"retention_days": {"raw": 3}}, "unknown: ['raw']"),
    ({"rules": [{"name": "r", "repos": []}]}, "repos"),
    ({"exceptions": [{"rule": "internal", "reason": ""}]}, "reason"),
])
def test_bad_configuration_names_the_problem(egress: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=r"egress|rules|exceptions|retention") as info:
        Settings(egress={"rules": RULES, **egress})
    assert message in str(info.value)
