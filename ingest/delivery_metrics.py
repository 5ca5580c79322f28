"""Prometheus view of envelope delivery and the spool, read at scrape time.

``DeliveryCollector`` turns ``EnvelopeEmitter.stats()`` into gauges named
``meterline_envelopes_<stat>`` (booleans as 0/1), so the emitter keeps plain
counters on its hot path and pays nothing until a scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .emitter import EnvelopeEmitter

#: Stats ``GatewayMetrics`` already exports (``meterline_envelopes_{produced,...}``).
_EXPORTED_ELSEWHERE = frozenset({"produced", "delivered", "failed", "spooled", "queued"})


class DeliveryCollector(Collector):
    def __init__(self, emitter: EnvelopeEmitter) -> None:
        self._emitter = emitter

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, value in self._emitter.stats().items():
            if name in _EXPORTED_ELSEWHERE:
                continue
            yield GaugeMetricFamily(f"meterline_envelopes_{name}",
                                    f"Envelope delivery and spool: {name.replace('_', ' ')}",
                                    value=float(value))
