"""Controlled spend for budget-alert tests, stored through the real stages.

A price override makes model ``meter-1`` cost exactly $1 per input token, so
``spend(..., usd=35)`` is one call costing $35.00, enriched by the processors'
own ``enrich`` and stored by the sink's own ``EventWriter`` (via
``tests.traffic.load_events``): the rollup the alert job reads is the one the
pipeline would have built.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from meterline.schemas import (
    BudgetSettings,
    Envelope,
    Event,
    KeySettings,
    PriceOverride,
    Settings,
    TeamSettings,
    Usage,
    UserSettings,
    new_request_id,
)
from tests.traffic import load_events

PRICED_MODEL = "meter-1"
UNPRICED_MODEL = "meter-unpriced"


def alert_settings(webhook_url: str, *, timezone: str = "UTC", budget_usd: int = 100,
                   users: list[UserSettings] | None = None, keys: list[KeySettings] | None = None,
                   team: dict[str, Any] | None = None, **budgets: Any) -> Settings:
    """One team, ``platform``, with a budget and the stub as its webhook; fast retries."""
    fast: dict[str, Any] = {"retry_attempts": 4, "retry_base_s": 0.01, "retry_max_s": 0.05,
                            "send_timeout_s": 2.0, "claim_settle_s": 0.05, "forecast": False}
    return Settings(
        timezone=timezone,
        teams=[TeamSettings(name="platform", cost_centre="CC-4100", lead="dana@example.com",
                            budget_usd=Decimal(budget_usd), slack_webhook=SecretStr(webhook_url),
                            **(team or {}))],
        users=users or [UserSettings(name="alice", team="platform"),
                        UserSettings(name="bob", team="platform")],
        keys=keys or [],
        prices=[PriceOverride(model=PRICED_MODEL, provider="openai",
                              input_per_mtok=Decimal(1_000_000), output_per_mtok=Decimal(0))],
        budgets=BudgetSettings(**{**fast, **budgets}),
    )


def spend(clickhouse: tuple[Any, str], settings: Settings, usd: int, at: datetime, *,
          user: str = "alice", team: str = "platform", repo: str = "acme/platform-api",
          model: str = PRICED_MODEL, key_id: str = "key_00000000a11c") -> Event:
    """Store one call costing exactly ``usd`` dollars, received at ``at``."""
    client, database = clickhouse
    envelope = Envelope(
        request_id=new_request_id(int(at.timestamp() * 1000)), received_at=at,
        first_byte_at=at + timedelta(milliseconds=300), done_at=at + timedelta(seconds=2),
        surface="openai.chat", provider="openai", requested_model=model, served_model=model,
        key_id=key_id, user=user, team=team, repo=repo, repo_source="header", tool="claude-code",
        status=200, outcome="ok", usage=Usage(input_tokens=usd, source="provider"))
    (event,) = load_events(client, database, settings, [envelope])
    return event


def ledger_rows(clickhouse: tuple[Any, str]) -> list[tuple[str, str]]:
    """(alert_key, state) of every ledger row, in order of recording."""
    client, database = clickhouse
    rows = client.query(f"SELECT alert_key, state FROM {database}.budget_alerts "
                        "ORDER BY recorded_at, state").result_rows
    return [(key, state) for key, state in rows]
