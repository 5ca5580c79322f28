"""Settings of the reconcile job: the ledger checked against the providers' own reports.

The admin keys that read a provider's usage and cost reports are secrets: the
file names their environment variable (``providers.<name>.admin_key_env``),
as it does for the API key. A provider served by the simulated provider (the
demo) needs none: the simulator serves the same report endpoints.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator

from .kafka_settings import _Section


def five_field_crontab(value: str, example: str) -> str:
    """``value`` if it is a five-field crontab expression (APScheduler's ``from_crontab``)."""
    if len(value.split()) != 5:
        raise ValueError(f"must be a five-field crontab expression, e.g. '{example}'")
    return value


class ReconcileSettings(_Section):
    """When the reconcile job runs, how far back it looks, and what it tolerates.

    Every difference is stored in ClickHouse (``provider_reconciliation``); one
    past a tolerance also alerts finance's Slack channel (``reports.slack_webhook``)
    and shows in the dashboard and the chargeback's footer.
    """

    enabled: bool = True
    #: Five-field crontab in ``Settings.timezone``: daily at 07:00 by default.
    cron: str = "0 7 * * *"
    #: Days checked each run, ending yesterday (UTC): providers' reports settle late.
    lookback_days: int = Field(3, ge=1, le=31)
    #: A (day, provider, model) whose costs differ by more than this alerts.
    tolerance_usd: Decimal = Field(Decimal("0.01"), ge=0)
    #: ... or whose token counts of any kind differ by more than this.
    tolerance_tokens: int = Field(0, ge=0)
    #: Spend a provider reports under keys the gateway does not hold alerts past this.
    unmetered_tolerance_usd: Decimal = Field(Decimal("0"), ge=0)
    timeout_s: float = Field(30.0, gt=0)

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        return five_field_crontab(value, "0 7 * * *")
