"""The enriched event: an envelope attributed and priced by the processors.

An event is flat on purpose: it is exactly one row of the ClickHouse
``events`` table, so the sink can insert the JSON the processors wrote without
re-shaping it. Costs are exact decimals carried as strings in JSON; a call
whose model has no price is ``unpriced`` with ``cost_usd`` zero *and* the flag
set, so every figure can show it in its own bucket instead of as free.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .egress import BodyPolicy
from .envelope import Outcome, RepoSource, Surface, UsageSource

EVENT_SCHEMA_VERSION = "1.4"

#: Decimal places kept for every cost: the ClickHouse column is Decimal(38, 12).
COST_SCALE = 12
PriceSource = Literal["genai-prices", "override", "none"]


class Event(BaseModel):
    """One priced, attributed call. ``version`` orders re-pricings of one request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = EVENT_SCHEMA_VERSION
    request_id: str
    version: int = 1
    received_at: datetime
    first_byte_at: datetime | None
    done_at: datetime

    surface: Surface
    provider: str
    requested_model: str
    served_model: str

    key_id: str
    user: str
    team: str
    cost_centre: str
    repo: str
    repo_source: RepoSource
    tool: str
    user_agent: str

    status: int
    outcome: Outcome
    error_class: str
    stream: bool

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    usage_source: UsageSource
    #: ``Usage.service_tier`` (1.2): the tier the call was priced at.
    service_tier: str = ""

    upstream_ms: float
    gateway_ms: float
    request_bytes: int
    response_bytes: int
    body_policy: BodyPolicy
    request_sha256: str
    response_sha256: str

    input_cost_usd: Decimal
    output_cost_usd: Decimal
    cost_usd: Decimal
    price_source: PriceSource
    unit_prices: str
    price_version: str
    price_model: str
    unpriced: bool
    attributed: bool
    pii_found: bool = False
    policy_breach: bool = False
    #: Egress (1.1): the rules broken (not excepted), every breach as JSON, and the
    #: content addresses of the request's messages (``sensitive_findings`` join on them).
    policy_rules: list[str] = Field(default_factory=list)
    policy_detail: str = ""
    request_messages: list[str] = Field(default_factory=list)
    #: Fallback (1.3): the envelope's ``attempts`` as a JSON array (``[]`` when the
    #: first target served), and how many there were.
    attempts: str = "[]"
    fallbacks: int = Field(0, ge=0, le=255)
    #: Routing rules (1.4, docs/routing.md); a call no rule matched leaves every routing
    #: column out of its row, and the store's defaults fill them. The counterfactual is
    #: what the requested model would have cost on its own route for the same usage:
    #: None here, and ``cost_usd`` in the store, when no enforce rule moved the call.
    counterfactual_cost_usd: Decimal | None = None
    #: The enforce rule that re-routed the call, and where the call would have gone
    #: without it ("" when none did); ``routing_mode`` is ``enforce``, ``shadow`` (only
    #: a shadow rule matched) or "".
    routing_rule: str = ""
    routing_mode: Literal["enforce", "shadow", ""] = ""
    counterfactual_provider: str = ""
    counterfactual_model: str = ""
    #: The first shadow rule that matched, its target, and that target's cost for the
    #: same usage (0 when no shadow rule matched).
    shadow_rule: str = ""
    shadow_provider: str = ""
    shadow_model: str = ""
    shadow_cost_usd: Decimal = Decimal(0)
