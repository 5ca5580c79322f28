"""Driving simulated traffic into a running pipeline.

Two modes, both reproducible from the organisation's seed:

- ``produce_envelopes``: volume runs. Envelopes go straight onto the envelopes
  topic with their historical timestamps, as a fleet of gateways would have
  produced them, so a month of traffic lands in seconds.
- ``drive_gateway``: real calls. Each simulated call becomes an HTTP request
  through the gateway with the developer's own virtual key, tool User-Agent and
  repo header, paced to a target rate. The gateway stamps the time and the
  upstream (the simulated provider) reports the usage.
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
from confluent_kafka import Producer

from meterline.schemas import SCHEMA_VERSION_HEADER, Envelope, KafkaSettings, Topics

from .organisation import Developer

#: Where ``meterline up`` writes the URL of the simulated provider it started (in data_dir).
SIMULATOR_URL_FILE = "simulator.url"
#: Calls per ``POST /sim/served`` request.
_SERVED_BATCH = 20_000


def simulator_url(demo_upstream: str, data_dir: str) -> str:
    """The simulated provider serving this pipeline: configured, or the one ``up`` started."""
    if demo_upstream:
        return demo_upstream.rstrip("/")
    try:
        return (Path(data_dir) / SIMULATOR_URL_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def tell_provider_served(provider_url: str, calls: list[dict[str, Any]]) -> int:
    """Tell the simulated provider it served ``calls`` (``POST /sim/served``); the count."""
    recorded = 0
    for first in range(0, len(calls), _SERVED_BATCH):
        body = orjson.dumps({"calls": calls[first:first + _SERVED_BATCH]})
        request = urllib.request.Request(f"{provider_url}/sim/served", data=body, method="POST",
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            recorded += int(orjson.loads(response.read())["recorded"])
    return recorded


class Progress:
    """A one-line progress bar on a terminal (plain periodic lines elsewhere)."""

    def __init__(self, total: int, label: str, out: TextIO = sys.stderr) -> None:
        self.total = max(total, 1)
        self.label = label
        self.out = out
        self.done = 0
        self._started = time.monotonic()
        self._shown = 0.0
        self._tty = out.isatty()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._shown >= (0.1 if self._tty else 5.0) or self.done >= self.total:
            self._shown = now
            self._render(now)

    def _render(self, now: float) -> None:
        share = min(self.done / self.total, 1.0)
        rate = self.done / max(now - self._started, 1e-9)
        bar = "#" * int(share * 30) + "." * (30 - int(share * 30))
        line = f"{self.label} [{bar}] {share:4.0%} {self.done:,}/{self.total:,} ({rate:,.0f}/s)"
        self.out.write(("\r" + line) if self._tty else (line + "\n"))
        self.out.flush()

    def close(self) -> None:
        if self.done < self.total:  # advance() already drew the final state otherwise
            self._render(time.monotonic())
        if self._tty:
            self.out.write("\n")


@dataclass(frozen=True, slots=True)
class DriveResult:
    sent: int
    failed: int
    seconds: float


def produce_envelopes(kafka: KafkaSettings, envelopes: list[Envelope], *,
                      progress: Progress | None = None) -> DriveResult:
    """Produce ``envelopes`` to the envelopes topic; returns once the broker acknowledged all."""
    from meterline.ingest.emitter import producer_config

    topic = Topics(kafka.topic_prefix).envelopes
    producer = Producer(producer_config(kafka))
    failures: list[str] = []

    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    started = time.monotonic()
    for envelope in envelopes:
        value = envelope.model_dump_json().encode()
        while True:
            try:
                producer.produce(topic, value=value, key=envelope.key_id.encode(),
                                 headers={SCHEMA_VERSION_HEADER: envelope.schema_version},
                                 on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let librdkafka drain, then retry
                producer.poll(0.05)
        producer.poll(0)
        if progress is not None:
            progress.advance()
    producer.flush(120)
    return DriveResult(len(envelopes) - len(failures), len(failures), time.monotonic() - started)


def _request_for(envelope: Envelope) -> tuple[str, dict[str, Any]]:
    """A gateway path and body that reproduce this call's shape (context trimmed to ~2k tokens)."""
    words = max(8, min(envelope.usage.input_tokens + envelope.usage.cache_read_tokens, 2000) // 2)
    prompt = " ".join(["refactor the payment module and keep the tests green"] * (words // 8))
    max_tokens = max(16, min(envelope.usage.output_tokens, 512))
    if envelope.surface == "anthropic.messages":
        return "/v1/messages", {"model": envelope.requested_model, "max_tokens": max_tokens,
                                "messages": [{"role": "user", "content": prompt}],
                                "stream": envelope.stream}
    if envelope.surface == "openai.responses":
        return "/v1/responses", {"model": envelope.requested_model, "input": prompt,
                                 "max_output_tokens": max_tokens, "stream": envelope.stream}
    if envelope.surface == "openai.embeddings":
        return "/v1/embeddings", {"model": envelope.requested_model, "input": prompt}
    return "/v1/chat/completions", {"model": envelope.requested_model, "max_tokens": max_tokens,
                                    "messages": [{"role": "user", "content": prompt}],
                                    "stream": envelope.stream}


async def _drive(gateway_url: str, envelopes: list[Envelope], keys: Mapping[str, str],
                 rate_per_s: float, concurrency: int, progress: Progress | None,
                 extra_headers: Mapping[str, str]) -> DriveResult:
    semaphore = asyncio.Semaphore(concurrency)
    failed = 0
    started = time.monotonic()

    async def one(session: aiohttp.ClientSession, envelope: Envelope) -> None:
        nonlocal failed
        path, body = _request_for(envelope)
        headers = {"authorization": f"Bearer {keys[envelope.key_id]}",
                   "user-agent": envelope.user_agent, "content-type": "application/json",
                   **extra_headers}
        if envelope.repo_source == "header":
            headers["x-meterline-repo"] = envelope.repo
        try:
            async with session.post(gateway_url + path, data=orjson.dumps(body),
                                    headers=headers) as response:
                await response.read()
                failed += response.status >= 400
        except aiohttp.ClientError:
            failed += 1
        finally:
            semaphore.release()
            if progress is not None:
                progress.advance()

    async with aiohttp.ClientSession() as session:
        tasks = []
        for index, envelope in enumerate(envelopes):
            due = started + index / rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await semaphore.acquire()
            tasks.append(asyncio.create_task(one(session, envelope)))
        await asyncio.gather(*tasks)
    return DriveResult(len(envelopes) - failed, failed, time.monotonic() - started)


def drive_gateway(gateway_url: str, envelopes: list[Envelope], keys: Mapping[str, str], *,
                  rate_per_s: float, concurrency: int = 32,
                  progress: Progress | None = None,
                  extra_headers: Mapping[str, str] | None = None) -> DriveResult:
    """Send each envelope's call through the gateway at ``rate_per_s``; ``keys`` maps key id → key.

    Pointed at the provider instead, with a developer's own key, the calls bypass
    the gateway (the planted direct-key stretch).
    """
    return asyncio.run(_drive(gateway_url.rstrip("/"), envelopes, keys, rate_per_s, concurrency,
                              progress, extra_headers or {}))


def mint_developer_keys(developers: Iterable[Developer],
                        mint: Callable[[Developer], str]) -> dict[str, str]:
    """Virtual keys for simulated developers, keyed by the developer's simulated key id."""
    return {developer.key_id: mint(developer) for developer in developers}
