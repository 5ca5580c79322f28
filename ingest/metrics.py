"""Prometheus metrics of one gateway process, on a registry of its own.

Counters and histograms are updated on the request path (a label lookup and an
increment each); the envelope figures are read from the emitter only when
``/metrics`` is scraped, so producing an envelope costs no metrics work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                      0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _EmitterCollector(Collector):
    """Envelope figures read from the emitter at scrape time.

    The emitter belongs to issue 4 (durable emission); counters it may not
    have yet (``spooled``) are read with a default so either side can move first.
    """

    def __init__(self, emitter: Any) -> None:
        self._emitter = emitter

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for name, doc in (("produced", "Envelopes handed to the producer"),
                          ("delivered", "Envelopes acknowledged by the broker"),
                          ("failed", "Envelopes whose delivery failed"),
                          ("spooled", "Envelopes written to the durable spool")):
            value = getattr(self._emitter, name, None)
            if isinstance(value, int | float):
                yield CounterMetricFamily(f"meterline_envelopes_{name}", doc, value=value)
        pending = getattr(self._emitter, "pending", None)
        if callable(pending):
            yield GaugeMetricFamily("meterline_envelopes_queued",
                                    "Envelopes produced but not yet acknowledged by the broker",
                                    value=pending())


class RolesCollector(Collector):
    """The sibling roles of ``meterline up``, read from its supervisor's state file.

    Read at scrape time only. A missing or half-written file yields nothing
    (the supervisor replaces it atomically, so that is a start-up instant).
    """

    def __init__(self, state_path: Path) -> None:
        self._state_path = state_path

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        try:
            state = orjson.loads(self._state_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return
        restarts = CounterMetricFamily("meterline_role_restarts",
                                       "Times `meterline up` restarted a role that died", labels=["role"])
        running = GaugeMetricFamily("meterline_role_up", "1 when the role's process is running",
                                    labels=["role"])
        for role, figures in sorted(state.items()):
            restarts.add_metric([role], figures.get("restarts", 0))
            running.add_metric([role], 1 if figures.get("running") else 0)
        yield restarts
        yield running


class GatewayMetrics:
    """The gateway's metrics; ``attach_emitter`` adds the envelope figures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("meterline_gateway_requests", "Calls answered, by surface and status",
                                ["surface", "status"], registry=self.registry)
        self.errors = Counter("meterline_gateway_errors",
                              "Calls refused by the gateway itself, by error class",
                              ["error"], registry=self.registry)
        self.upstream_errors = Counter(
            "meterline_gateway_upstream_errors",
            "Upstream failures: error statuses passed through, timeouts, unreachable, cut streams",
            ["provider", "kind"], registry=self.registry)
        self.client_disconnects = Counter("meterline_gateway_client_disconnects",
                                          "Streams the client left before the end", ["surface"],
                                          registry=self.registry)
        self.duration = Histogram("meterline_gateway_request_seconds",
                                  "Whole call duration as the gateway saw it", ["surface"],
                                  buckets=_LATENCY_BUCKETS_S, registry=self.registry)
        self.added_latency = Histogram(
            "meterline_gateway_added_seconds", "Time spent in the gateway outside the upstream",
            ["surface"], buckets=_LATENCY_BUCKETS_S, registry=self.registry)
        self.usage_source = Counter("meterline_gateway_usage", "Envelopes by where usage came from",
                                    ["source"], registry=self.registry)
        self.refusals = Counter("meterline_gateway_limit_refusals",
                                "Calls refused by a rate limit or a blocking budget",
                                ["reason", "scope"], registry=self.registry)
        self.enforcement_unavailable = Counter(
            "meterline_enforcement_unavailable",
            "Calls the ledger could not be asked about, by governance.on_unavailable",
            ["mode"], registry=self.registry)
        # fallback over an alias's targets (ingest/fallback.py, docs/routing.md)
        self.fallbacks = Counter(
            "meterline_gateway_fallbacks",
            "Calls moved on from a target before any byte reached the client, by the target's "
            "provider and why (http_529, UpstreamUnavailable, breaker_open ...)",
            ["from_provider", "reason"], registry=self.registry)
        self.retry_budget_exhausted = Counter(
            "meterline_gateway_retry_budget_exhausted",
            "Fallbacks not tried because the retry budget was spent (the failure was answered)",
            ["provider"], registry=self.registry)
        self.breaker_transitions = Counter(
            "meterline_gateway_breaker_transitions",
            "Circuit breaker changes of state, by target and the state entered",
            ["provider", "model", "state"], registry=self.registry)
        self.breaker_state = Gauge(
            "meterline_gateway_breaker_state",
            "Each target's circuit breaker: 0 closed, 1 half-open, 2 open",
            ["provider", "model"], registry=self.registry)
        self._children: dict[tuple[str, int, str], tuple[Any, Any, Any, Any]] = {}

    def observe_call(self, surface: str, status: int, total_s: float, added_s: float,
                     usage_source: str) -> None:
        """Record one finished call: four label lookups, cached after the first time."""
        key = (surface, status, usage_source)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(surface, str(status)),
                        self.duration.labels(surface), self.added_latency.labels(surface),
                        self.usage_source.labels(usage_source))
            self._children[key] = children
        requests, duration, added, usage = children
        requests.inc()
        duration.observe(total_s)
        added.observe(added_s)
        usage.inc()

    def attach_emitter(self, emitter: Any) -> None:
        self.registry.register(_EmitterCollector(emitter))

    def attach_roles(self, state_path: Path) -> None:
        """Export the role restarts of the ``up`` this gateway runs under."""
        self.registry.register(RolesCollector(state_path))
