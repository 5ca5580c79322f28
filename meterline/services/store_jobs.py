"""The store's own jobs (re-pricing, reconciliation, rollup repair), wired from settings.

This is where stages meet: ``sinks`` knows ClickHouse and ``processors`` knows
prices, and neither imports the other, so the re-pricing job is assembled
here from ``sinks.reprice_range`` and ``processors.reprice_row``.

``register_store_jobs`` is called by ``run_store`` on the store's
``JobRegistry`` (reached through ``POST /jobs/<name>``); ``run_job_directly``
is the CLI's fallback when no store is running: it opens ClickHouse itself,
which with embedded chdb is allowed only because no store holds the data.

Jobs and their arguments (times are ISO 8601; a date or a time without an
offset is read in the configured ``timezone``):

- ``reprice {"from", "to"}`` → ``RepriceResult.as_dict()``
- ``reconcile {"from"?, "to"?}`` → ``Reconciliation.as_dict()``
- ``repair_rollups {"from", "to"}`` → ``{"delta_rows": n}``
- ``reconcile_providers {"from"?, "to"?, "alert"?}`` (UTC dates, ``to`` exclusive;
  default the last ``reconcile.lookback_days`` days) → ``ReconcileRun.summary()``
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from meterline.processors import PriceBook
from meterline.processors.price_book import GENAI_PRICES_VERSION
from meterline.processors.reprice import reprice_row
from meterline.reports.provider_reports import ReportedUsage
from meterline.reports.reconcile_providers import PriceFn, ProviderReconciler
from meterline.schemas import Settings, Usage
from meterline.sinks import EventWriter, JobArgumentError, JobRegistry, connect, migrate
from meterline.sinks.reconcile import reconcile
from meterline.sinks.reprice import reprice_range
from meterline.sinks.rollups import repair_rollups


def parse_moment(value: Any, timezone: str, name: str) -> datetime:
    """An ISO date or date-time; naive values are local to ``timezone``."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise JobArgumentError(f"{name}: not an ISO date or time: {value!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.astimezone(UTC)


def _range(settings: Settings, args: Mapping[str, Any], *, required: bool
           ) -> tuple[datetime | None, datetime | None]:
    if required and ("from" not in args or "to" not in args):
        raise JobArgumentError("arguments 'from' and 'to' are required")
    start = parse_moment(args["from"], settings.timezone, "from") if "from" in args else None
    end = parse_moment(args["to"], settings.timezone, "to") if "to" in args else None
    if start is not None and end is not None and end <= start:
        raise JobArgumentError(f"'to' ({end}) must be after 'from' ({start})")
    return start, end


def price_book_sha256(settings: Settings) -> str:
    """Identifies the prices a run used: the overrides and the genai-prices release."""
    overrides = [override.model_dump(mode="json") for override in settings.prices]
    return hashlib.sha256(orjson.dumps({"overrides": overrides,
                                        "genai_prices": GENAI_PRICES_VERSION})).hexdigest()


def _reprice(settings: Settings, writer: EventWriter, args: Mapping[str, Any]
             ) -> dict[str, Any]:
    start, end = _range(settings, args, required=True)
    assert start is not None and end is not None
    oldest = datetime.now(UTC) - timedelta(days=settings.clickhouse.events_ttl_days)
    if start < oldest:
        # Events past retention are gone; repairing their hours would erase the rollups.
        raise JobArgumentError(f"'from' is before the retention horizon ({oldest:%Y-%m-%d})")
    book = PriceBook(settings.prices, {name: p.kind for name, p in settings.providers.items()})
    result = reprice_range(writer.client, writer.database, start, end,
                           partial(reprice_row, book=book), lock=writer.lock,
                           price_book_sha256=price_book_sha256(settings))
    return result.as_dict()


def _reconcile(settings: Settings, writer: EventWriter, args: Mapping[str, Any]
               ) -> dict[str, Any]:
    start, end = _range(settings, args, required=False)
    with writer.lock:  # a settled snapshot: no insert half-way between events and rollup
        return reconcile(writer.client, writer.database, start, end).as_dict()


def _repair(settings: Settings, writer: EventWriter, args: Mapping[str, Any]
            ) -> dict[str, Any]:
    start, end = _range(settings, args, required=True)
    assert start is not None and end is not None
    with writer.lock:
        return {"delta_rows": repair_rollups(writer.client, writer.database, start, end)}


def list_price(settings: Settings) -> PriceFn:
    """Prices a provider's reported usage (a day's total) at the dated list rates.

    A day's usage is many calls, so it is priced by the token, not as one
    call: the per-token rate of each kind is read from a 1,000-token quote,
    below any long-context tier. Used only for the foreign part of a project
    or workspace that mixes the gateway's keys with others.
    """
    book = PriceBook(settings.prices, {name: p.kind for name, p in settings.providers.items()})
    by_kind: dict[str, str] = {p.kind: name for name, p in reversed(settings.providers.items())}
    unit = 1000

    def price(kind: str, model: str, day: date, usage: ReportedUsage) -> Decimal:
        tokens = usage.tokens
        counts = {"input_tokens": tokens.input, "output_tokens": tokens.output,
                  "cache_read_tokens": tokens.cache_read,
                  "cache_write_5m_tokens": tokens.cache_write - usage.cache_write_1h,
                  "cache_write_1h_tokens": usage.cache_write_1h}
        at = datetime.combine(day, time(12), UTC)
        total = Decimal(0)
        for field, tokens_of_kind in counts.items():
            if tokens_of_kind:
                quote = book.quote(by_kind.get(kind, kind), model,
                                   Usage(source="provider", **{field: unit}), at)
                if quote is not None:
                    total += quote.cost_usd * tokens_of_kind / unit
        return total
    return price


def _reconcile_providers(settings: Settings, connect_: Callable[[], Any],
                         args: Mapping[str, Any]) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    end = parse_moment(args["to"], "UTC", "to").date() if "to" in args else today
    start = (parse_moment(args["from"], "UTC", "from").date() if "from" in args
             else end - timedelta(days=settings.reconcile.lookback_days))
    if end <= start:
        raise JobArgumentError(f"'to' ({end}) must be after 'from' ({start})")
    reconciler = ProviderReconciler(connect_(), settings.clickhouse.database, settings,
                                    list_price(settings))
    return reconciler.run(start, end, alert=bool(args.get("alert", True))).summary()


def register_provider_reconcile(scheduler: Any | None, jobs: JobRegistry,
                                settings: Settings) -> None:
    """``reconcile_providers`` on demand, and daily on ``reconcile.cron`` when enabled
    and a ``scheduler`` is given.

    Each run opens its own writable client (as the chargeback does), so a slow
    provider never holds the sink's.
    """
    def open_client() -> Any:
        return connect(settings.clickhouse)

    jobs.register("reconcile_providers", partial(_reconcile_providers, settings, open_client))
    if scheduler is None or not settings.reconcile.enabled:
        return
    from apscheduler.triggers.cron import CronTrigger

    def daily() -> None:
        ProviderReconciler(open_client(), settings.clickhouse.database, settings,
                           list_price(settings)).run_scheduled()

    scheduler.add_job(daily, CronTrigger.from_crontab(settings.reconcile.cron,
                                                      timezone=settings.timezone),
                      id="reconcile-providers", name="provider reconciliation",
                      replace_existing=True, misfire_grace_time=6 * 3600)


def register_store_jobs(jobs: JobRegistry, settings: Settings, writer: EventWriter) -> None:
    """Register ``reprice``, ``reconcile`` and ``repair_rollups`` on ``jobs``."""
    jobs.register("reprice", partial(_reprice, settings, writer))
    jobs.register("reconcile", partial(_reconcile, settings, writer))
    jobs.register("repair_rollups", partial(_repair, settings, writer))


def run_job_directly(settings: Settings, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Run a store job in this process against ClickHouse; only when no store is running."""
    client = connect(settings.clickhouse)
    migrate(client, settings.clickhouse)
    writer = EventWriter(client, settings.clickhouse.database, threading.RLock())
    jobs = JobRegistry()
    register_store_jobs(jobs, settings, writer)
    register_provider_reconcile(None, jobs, settings)
    return jobs.run(name, args)
