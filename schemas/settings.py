"""Settings: the one typed configuration object every process loads once.

Sources, highest priority first (pydantic-settings):

1. arguments passed to ``Settings(...)`` (the CLI's flags);
2. environment variables ``METERLINE_<SECTION>__<FIELD>``, e.g.
   ``METERLINE_KAFKA__BOOTSTRAP_SERVERS``;
3. the declarative YAML file an operator keeps in git (``meterline.yaml``),
   plus the keys file written by ``meterline keys create``.

Secrets (provider API keys, Slack webhooks) are never read from the file: the
file names an environment variable (``api_key_env``, ``slack_webhook_env``) and
``load_settings`` resolves it into a ``SecretStr``. Loading reports every bad
field at once, each with its file and line (see ``config_file``).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .egress import BodyPolicy, EgressSettings
from .governance import BudgetMode, GovernanceSettings
from .kafka_settings import KafkaSettings, _Section
from .reconcile_settings import ReconcileSettings, five_field_crontab
from .routing_rules import RoutingRule, check_routing_rules

ProviderKind = Literal["openai", "anthropic", "azure", "openai_compatible", "simulated"]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class ClickHouseSettings(_Section):
    """``chdb:///path`` embeds ClickHouse in the store process; ``http://`` is a server."""

    dsn: str = "chdb://.meterline/clickhouse"
    database: str = "meterline"
    #: Server only: the store's read-only client connects as this (least-privilege) user
    #: instead of ``dsn``'s (docs/security.md); empty: ``dsn`` with readonly=1.
    reader_dsn: str = ""
    events_ttl_days: int = Field(730, ge=1)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    @field_validator("database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        # written into SQL as an identifier (``{database}.events``): never a value to bind
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", value):
            raise ValueError("must be a plain identifier: letters, digits and _, not first a digit")
        return value


class GatewaySettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Processes serving ``port`` (SO_REUSEPORT); above one, each spools to
    #: ``spool_dir/worker-<i>`` (``services.gateway_workers``).
    workers: int = Field(1, ge=1)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    #: A client must deliver its whole request body within this time (slowloris).
    body_timeout_s: float = Field(30.0, gt=0)
    upstream_timeout_s: float = Field(600.0, gt=0)
    upstream_connect_timeout_s: float = Field(10.0, gt=0)
    max_upstream_connections: int = Field(256, ge=1)
    audit_body_policy: BodyPolicy = "hash"
    #: The durable spool: every envelope is written here before it is produced.
    spool_dir: str = ".meterline/spool"
    #: Models not named in ``models`` go to the surface's default provider under
    #: their own name; when False they are refused with 404 in the API's format.
    allow_unlisted_models: bool = True
    #: One JSON object per log line (``json``) or plain text (``text``).
    log_format: Literal["json", "text"] = "json"
    #: How long ``GET /v1/models`` waits for the upstream list before answering
    #: from the configured aliases alone.
    models_list_timeout_s: float = Field(2.0, gt=0)
    #: A segment is closed at this size (or age); whole segments are truncated.
    #: At most 1 GiB: the spool's index keeps record offsets in 32 bits (``spool_index``).
    spool_segment_bytes: int = Field(8 * 1024 * 1024, ge=4096, le=1 << 30)
    spool_segment_max_age_s: float = Field(30.0, gt=0)
    #: Hard cap on the spool's disk use; past it envelopes go to Kafka unspooled.
    spool_max_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=64 * 1024)
    #: /readyz and the metrics raise the spool alarm at this fraction of the cap.
    spool_alarm_ratio: float = Field(0.8, gt=0, le=1)
    #: Group commit: the background thread fsyncs what was appended this often.
    spool_fsync_interval_s: float = Field(0.02, gt=0)
    #: A record still unconfirmed this long after later ones were stored (it was
    #: dead-lettered, or its confirmation lost) no longer pins its segment: the
    #: segment is moved aside to ``unconfirmed/`` with a logged reason.
    spool_unconfirmed_grace_s: float = Field(3600.0, gt=0)
    #: Re-create the topics when the broker comes back without them (tansu keeps
    #: topics in memory); None means "when ``kafka.embedded``".
    create_missing_topics: bool | None = None
    #: The supervisor's state file (pids, restarts per role) that ``meterline up``
    #: writes; set by ``up`` so ``/metrics`` counts role restarts. Empty: none.
    roles_state_file: str = ""
    #: Fallback over an alias's targets (docs/routing.md): attempts per call at most, and
    #: the retry budget: retries in the last minute stay under this share of the calls
    #: that could fall back, or under the floor when that is more.
    max_attempts: int = Field(3, ge=1, le=10)
    retry_budget_ratio: float = Field(0.2, ge=0, le=1)
    retry_budget_min_per_minute: int = Field(10, ge=0)
    #: A target's circuit breaker opens after this many failures in a row, stays open
    #: this long, then lets one probe call through.
    breaker_failures: int = Field(5, ge=1)
    breaker_open_s: float = Field(30.0, gt=0)


class StoreSettings(_Section):
    """The store process owns ClickHouse and serves the read-only query path.

    Every call to the store endpoint presents one of two service credentials
    (docs/security.md): ``read_token`` may run read-only SQL, ``operator_token``
    may also run store jobs. Both from the environment only
    (``METERLINE_STORE__READ_TOKEN``, ``METERLINE_STORE__OPERATOR_TOKEN``), or
    the token files ``meterline up`` writes under ``data_dir``.
    """

    host: str = "127.0.0.1"
    port: int = Field(8124, ge=0, le=65535)
    max_batch_size: int = Field(5000, ge=1)
    #: A batch waits at most this long to fill: at low load it is most of an envelope's
    #: way to a queryable row (0.5 s put p99 at 1.07 s at 10 % load; 0.25 s: 0.84 s).
    max_batch_time_s: float = Field(0.25, gt=0)
    read_token: SecretStr | None = None
    operator_token: SecretStr | None = None
    #: Limits on typed SQL (the read-only client): ClickHouse refuses past them.
    max_query_time_s: int = Field(30, ge=1)
    max_result_rows: int = Field(1_000_000, ge=1)
    max_result_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    max_query_bytes: int = Field(256 * 1024, ge=1024)

    @field_validator("read_token", "operator_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # an empty environment variable counts as unset
        if len(value.get_secret_value()) < 32:
            raise ValueError("store tokens must be at least 32 characters, e.g. the output of: "
                             "python3 -c 'import secrets;print(secrets.token_urlsafe(32))'")
        return value


class ReportSettings(_Section):
    """Where reports are written, when the monthly chargeback runs, and where it is sent.

    Times are in ``Settings.timezone``: ``chargeback_cron`` fires there, and the
    chargeback month is the calendar month in that zone. Secrets (the SMTP
    password, the Slack webhook) come from the environment variables named here.
    """

    output_dir: str = ".meterline/reports"
    chargeback_enabled: bool = True
    #: Five-field crontab: default 06:00 on the 1st, for the month that just ended.
    chargeback_cron: str = "0 6 1 * *"
    #: The cost centre finance books unattributed spend to (a suspense account).
    unattributed_cost_centre: str = "UNATTRIBUTED"
    smtp_host: str = ""
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password_env: str = ""
    smtp_password: SecretStr | None = None
    email_from: str = ""
    #: Finance's addresses: they get the HTML report with the CSV attached.
    email_to: list[str] = Field(default_factory=list)
    #: Also mail each team lead their own summary.
    email_leads: bool = False
    slack_webhook_env: str = ""
    slack_webhook: SecretStr | None = None

    @field_validator("chargeback_cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        return five_field_crontab(value, "0 6 1 * *")


class ProviderSettings(_Section):
    """One upstream. The key comes from the environment variable ``api_key_env``."""

    kind: ProviderKind
    base_url: str
    api_key_env: str = ""
    api_key: SecretStr | None = None
    #: The admin key that reads the provider's usage and cost reports (the reconcile job).
    admin_key_env: str = ""
    admin_key: SecretStr | None = None
    #: Azure OpenAI only: the api-version query parameter.
    api_version: str = ""

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class ModelTarget(_Section):
    """One place an alias may be served: a provider and the model it serves there.

    ``weight`` (when any target of the alias sets one; unset counts as 1) is this
    target's share of first attempts; 0 makes it a fallback only.
    """

    provider: str
    model: str = ""
    weight: int | None = Field(None, ge=0)


class ModelRoute(_Section):
    """A requested model name mapped to a provider and the model it serves, or to
    ordered ``targets`` (docs/routing.md): the first serves, the rest are fallbacks."""

    provider: str = ""
    model: str = ""
    targets: list[ModelTarget] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_form(self) -> ModelRoute:
        if bool(self.provider) == bool(self.targets):
            raise ValueError("give either provider (and model) or targets, not both")
        if self.targets and self.model:
            raise ValueError("model belongs to each target when targets are given")
        if self.targets and not sum(1 if t.weight is None else t.weight for t in self.targets):
            raise ValueError("the targets' weights add up to 0: give at least one a weight above 0")
        return self

    def target_list(self) -> list[ModelTarget]:
        """The targets in order; the one-target form is a list of one."""
        return self.targets or [ModelTarget(provider=self.provider, model=self.model)]


BudgetPeriodKind = Literal["month", "week"]


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a Slack incoming webhook, or None when it can.

    Slack's own URLs are ``https://hooks.slack.com/services/...``; any other
    absolute http(s) URL is accepted too (a relay, or a test's loopback stub).
    The reason never repeats the URL: it is a secret.
    """
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return "is not an absolute http(s) URL"
    if parsed.hostname == "hooks.slack.com" and (
            parsed.scheme != "https" or not parsed.path.startswith("/services/")):
        return "is not a Slack incoming webhook (expected https://hooks.slack.com/services/...)"
    return None


def _thresholds(values: list[Decimal]) -> list[Decimal]:
    if not values:
        raise ValueError("at least one threshold is needed, e.g. [0.8, 1.0]")
    if any(value <= 0 or value > 10 for value in values):
        raise ValueError("thresholds are fractions of the budget: 0 < threshold <= 10 (1.0 = 100%)")
    return sorted(set(values))


class BudgetSettings(_Section):
    """Budget alerts: how often spend is checked, and the defaults teams may override.

    A team's budget (``teams[].budget_usd``) applies per period (a calendar
    month by default, or an ISO week) cut in the team's time zone
    (``teams[].budget_timezone``, else ``Settings.timezone``). Each threshold
    (a fraction of the budget: 0.8 = 80%) alerts the team's Slack webhook once
    per period. Users and keys may carry their own budgets (``users[].budget_usd``,
    ``keys[].budget_usd``); their alerts go to their team's webhook, with the
    team's period, zone and thresholds.
    """

    enabled: bool = True
    period: BudgetPeriodKind = "month"
    #: ``alert`` only alerts; ``block`` also refuses calls at 100 % (teams, users, keys may
    #: override it with ``budget_mode``). docs/governance.md says how to roll out.
    mode: BudgetMode = "alert"
    thresholds: list[Decimal] = Field(default_factory=lambda: [Decimal("0.8"), Decimal("1.0")])
    check_interval_s: float = Field(300.0, ge=1)
    #: Warn once per period when the projection reaches the budget before period end.
    forecast: bool = True
    #: No forecast before this much of the period has passed: a day-one rate is noise.
    forecast_min_elapsed_h: float = Field(48.0, ge=0)
    #: The projection's rate: spend over this trailing window (clipped to the period).
    forecast_window_h: float = Field(168.0, gt=0)
    #: Where "dig in" links point, e.g. a dashboard; ``{team}`` and ``{period}`` are filled in.
    link_template: str = ""
    #: Delivery: attempts per alert per check, exponential backoff from ``retry_base_s``.
    retry_attempts: int = Field(5, ge=1, le=20)
    retry_base_s: float = Field(1.0, ge=0)
    retry_max_s: float = Field(30.0, ge=0)
    send_timeout_s: float = Field(10.0, gt=0)
    #: Exactly-once ledger: wait this long after claiming before reading the claims back.
    claim_settle_s: float = Field(2.0, ge=0)
    #: A claim not followed by "sent" or "failed" this long is presumed dead and retried.
    claim_timeout_s: float = Field(900.0, gt=0)
    #: Production setting: a team with a budget whose webhook is unset or unusable stops
    #: start-up. Off (the default), its alerts are recorded as not delivered and the rest runs.
    require_webhooks: bool = False

    @field_validator("thresholds")
    @classmethod
    def _valid_thresholds(cls, values: list[Decimal]) -> list[Decimal]:
        return _thresholds(values)

    @model_validator(mode="after")
    def _claim_outlives_delivery(self) -> BudgetSettings:
        worst_s = self.claim_settle_s + self.retry_attempts * (
            self.send_timeout_s + self.retry_max_s)
        if self.claim_timeout_s <= worst_s:
            raise ValueError(
                f"claim_timeout_s must exceed the longest delivery ({worst_s:g} s: settle + "
                "attempts x (send_timeout_s + retry_max_s)), or a slow send could be repeated")
        return self


class AnomalyThresholds(_Section):
    """When a detector fires. ``anomalies.teams.<team>`` overrides any subset per team.

    Rate spikes compare an entity's spend or requests in an hour (a team's
    spend also per day) with the same hour on its recent days of the same kind
    (weekdays with weekdays, weekend days with weekend days) in the team's time
    zone: the finding needs all of ``spike_ratio`` x the median, the median plus
    ``spike_mad_k`` robust standard deviations (1.4826 x MAD), and the absolute
    floor, so quiet entities and noisy ones both stay quiet.
    """

    spike_ratio: float = Field(5.0, gt=1)
    spike_mad_k: float = Field(6.0, ge=0)
    #: Days of history per hour slot the baseline keeps, and needs before judging.
    baseline_days: int = Field(10, ge=2, le=60)
    min_baseline_days: int = Field(4, ge=1)
    min_hourly_requests: int = Field(120, ge=1)
    min_hourly_spend_usd: float = Field(25.0, ge=0)
    min_daily_team_spend_usd: float = Field(150.0, ge=0)
    #: Absolute ceilings on a key's and a user's spend and requests in one UTC hour, judged
    #: from a key's first call (no baseline); 0 disables one. Above a heavy Claude Code
    #: session (a few hundred calls, $10-30 an hour); a user may run two at once.
    key_hourly_spend_usd: float = Field(50.0, ge=0)
    key_hourly_requests: int = Field(1000, ge=0)
    user_hourly_spend_usd: float = Field(100.0, ge=0)
    user_hourly_requests: int = Field(2000, ge=0)
    #: A user's share of the team's month-to-date spend that alerts (0.4 = 40%).
    budget_share: float = Field(0.4, gt=0, le=1)
    share_min_team_spend_usd: float = Field(50.0, ge=0)
    share_min_month_days: float = Field(3.0, ge=0)
    #: In a team of one or two active users a large share is the normal case.
    share_min_users: int = Field(3, ge=1)
    #: A key used again after this long without calls.
    dormant_after_days: float = Field(14.0, gt=0)
    #: Models and tools seen in a team's first days are its starting set, not news.
    learning_days: float = Field(7.0, ge=0)
    #: Provider error bursts: error rate over a window with at least this many calls.
    error_rate: float = Field(0.5, gt=0, le=1)
    error_min_requests: int = Field(20, ge=1)
    error_window_minutes: int = Field(5, ge=1, le=60)


class AnomalySettings(_Section):
    """Streaming anomaly detection (processors) and its Slack notifications (store).

    Findings go to the team's webhook (``teams[].slack_webhook``) and to the
    operator channel (``operator_slack_webhook``, from the environment, e.g.
    ``METERLINE_ANOMALIES__OPERATOR_SLACK_WEBHOOK``). A finding is notified once
    (by its id), and a (team, kind, entity) at most once per ``cooldown_h`` of
    event time. Findings older than ``notify_max_age_h`` (a replayed month) are
    stored but not notified.
    """

    enabled: bool = True
    defaults: AnomalyThresholds = AnomalyThresholds()
    teams: dict[str, AnomalyThresholds] = Field(default_factory=dict)
    notify: bool = True
    cooldown_h: float = Field(6.0, ge=0)
    notify_max_age_h: float = Field(24.0, gt=0)
    operator_slack_webhook: SecretStr | None = None

    def thresholds_for(self, team: str) -> AnomalyThresholds:
        """The defaults with the fields the team's entry sets explicitly."""
        override = self.teams.get(team)
        if override is None:
            return self.defaults
        return self.defaults.model_copy(update=override.model_dump(exclude_unset=True))


class TeamSettings(_Section):
    name: str = Field(min_length=1)
    cost_centre: str = ""
    lead: str = ""
    budget_usd: Decimal | None = Field(None, ge=0)
    slack_webhook_env: str = ""
    slack_webhook: SecretStr | None = None
    #: Overrides of the ``budgets`` defaults for this team (and its users' and keys' budgets).
    budget_period: BudgetPeriodKind | None = None
    budget_timezone: str | None = None
    alert_thresholds: list[Decimal] | None = None
    #: What the audit trail keeps of this team's bodies (else ``gateway.audit_body_policy``);
    #: an ``egress.rules`` entry may override it per repository.
    body_policy: BodyPolicy | None = None
    #: ``block`` refuses calls once the budget is spent (else ``budgets.mode``).
    budget_mode: BudgetMode | None = None
    #: Rate limits for the whole team (else ``governance.team_limits``).
    rpm: int | None = Field(None, ge=0)
    tpm: int | None = Field(None, ge=0)

    @field_validator("slack_webhook")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        problem = webhook_url_problem(value.get_secret_value()) if value is not None else None
        if problem:
            raise ValueError(f"the Slack webhook URL {problem}")
        return value

    @field_validator("budget_timezone")
    @classmethod
    def _team_zone(cls, value: str | None) -> str | None:
        return None if value is None else _known_zone(value)

    @field_validator("alert_thresholds")
    @classmethod
    def _team_thresholds(cls, values: list[Decimal] | None) -> list[Decimal] | None:
        return None if values is None else _thresholds(values)


class UserSettings(_Section):
    name: str = Field(min_length=1)
    team: str
    email: str = ""
    #: An optional personal budget, alerted to the team's webhook (see ``BudgetSettings``).
    budget_usd: Decimal | None = Field(None, ge=0)
    budget_mode: BudgetMode | None = None
    rpm: int | None = Field(None, ge=0)
    tpm: int | None = Field(None, ge=0)


class KeySettings(_Section):
    """A virtual key, stored as the SHA-256 of the key text, never the key."""

    id: str = Field(pattern=r"^key_[0-9a-f]{12}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    user: str
    team: str
    repo: str = ""
    name: str = ""
    created_at: str = ""
    admin: bool = False
    #: May mint, list, rotate and revoke the keys of its own team (docs/governance.md).
    team_admin: bool = False
    #: An optional budget for this key, alerted to its team's webhook.
    budget_usd: Decimal | None = Field(None, ge=0)
    budget_mode: BudgetMode | None = None
    rpm: int | None = Field(None, ge=0)
    tpm: int | None = Field(None, ge=0)
    #: Where the key may go: provider names and model patterns (``claude-*``); empty: anywhere.
    allowed_providers: list[str] = Field(default_factory=list)
    allowed_models: list[str] = Field(default_factory=list)
    #: Lifecycle, set through the key registry: unusable from these moments on.
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    #: Set on a key replaced by ``keys rotate``: its successor's id.
    rotated_to: str = ""


class PriceOverride(_Section):
    """A negotiated or self-hosted price, USD per million tokens, from a date on."""

    model: str
    provider: str = ""
    effective_from: str = "1970-01-01"
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    cache_read_per_mtok: Decimal | None = Field(None, ge=0)
    cache_write_5m_per_mtok: Decimal | None = Field(None, ge=0)
    cache_write_1h_per_mtok: Decimal | None = Field(None, ge=0)
    #: Multiplier applied to the public price instead of fixed prices (e.g. 0.8).
    discount_factor: Decimal | None = Field(None, gt=0)


def _default_providers() -> dict[str, ProviderSettings]:
    return {
        "openai": ProviderSettings(
            kind="openai", base_url="https://api.openai.com", api_key_env="OPENAI_API_KEY"
        ),
        "anthropic": ProviderSettings(
            kind="anthropic", base_url="https://api.anthropic.com", api_key_env="ANTHROPIC_API_KEY"
        ),
    }


class Settings(BaseSettings):
    """Everything a Meterline process needs. Load once with ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="METERLINE_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: str = ".meterline"
    timezone: str = "UTC"
    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    gateway: GatewaySettings = GatewaySettings()
    store: StoreSettings = StoreSettings()
    reports: ReportSettings = ReportSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    budgets: BudgetSettings = BudgetSettings()
    governance: GovernanceSettings = GovernanceSettings()
    anomalies: AnomalySettings = AnomalySettings()
    egress: EgressSettings = EgressSettings()
    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)
    models: dict[str, ModelRoute] = Field(default_factory=dict)
    #: Rules that route matching calls to a cheaper target, or record that they would
    #: (docs/routing.md); in order: the first matching rule of each mode applies.
    routing_rules: list[RoutingRule] = Field(default_factory=list)
    teams: list[TeamSettings] = Field(default_factory=list)
    users: list[UserSettings] = Field(default_factory=list)
    keys: list[KeySettings] = Field(default_factory=list)
    prices: list[PriceOverride] = Field(default_factory=list)
    keys_file: str = ""
    #: Base URL that serves every provider configured without an API key (the
    #: simulated provider in the embedded demo); empty means use the real URLs.
    demo_upstream: str = ""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _known_zone(value)

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        teams = {team.name for team in self.teams}
        for route_name, route in self.models.items():
            for target in route.target_list():
                if target.provider not in self.providers:
                    raise ValueError(f"models.{route_name}: unknown provider {target.provider!r}")
        check_routing_rules(self.routing_rules, set(self.models), set(self.providers))
        if teams:
            for user in self.users:
                if user.team not in teams:
                    raise ValueError(f"users.{user.name}: unknown team {user.team!r}")
        return self

    def team(self, name: str) -> TeamSettings | None:
        return next((team for team in self.teams if team.name == name), None)

    def budget_calendar(self, team: TeamSettings) -> tuple[BudgetPeriodKind, str]:
        """The period and time zone of ``team``'s budgets (and its users' and keys')."""
        return (team.budget_period or self.budgets.period,
                team.budget_timezone or self.timezone)
