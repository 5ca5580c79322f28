"""Fallback end to end (issue 20): aliases with ordered targets on real parts.

The roles run as processes on a real broker and ClickHouse (chdb in the store);
upstream is a simulated provider of this module's own (its faults would leak
into other tests through the session's). Two providers of one kind point at it
(``anthropic`` and ``anthropic-backup``, ``openai`` and ``openai-backup``), so a
fault on the primary target's model fails the primary only. ``anthropic-dead``
points at a port nothing listens on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from meterline.embedded import free_port
from meterline.processors.price_book import PriceBook
from meterline.schemas import ProviderKind, Usage
from meterline.simulator import create_provider_app
from tests.harness import CallerThreads, Pipeline, ThreadedServer, provider_bill, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

REQUEST_ID = "x-meterline-request-id"
NO_KEY = {"api_key_env": "METERLINE_TEST_NO_KEY"}
KINDS: dict[str, ProviderKind] = {"openai": "openai", "openai-backup": "openai", "anthropic": "anthropic",
         "anthropic-backup": "anthropic", "anthropic-dead": "anthropic"}
CONFIG = {
    "providers": {
        "anthropic-backup": {"kind": "anthropic", "base_url": "https://api.anthropic.com", **NO_KEY},
        "openai-backup": {"kind": "openai", "base_url": "https://api.openai.com", **NO_KEY},
        # a key, so demo_upstream leaves its URL alone
        "anthropic-dead": {"kind": "anthropic", "base_url": f"http://127.0.0.1:{free_port()}",
                           "api_key_env": "METERLINE_TEST_DEAD_KEY"},
    },
    "models": {
        "claude-sonnet": {"targets": [{"provider": "anthropic", "model": "claude-sonnet-4-5"},
                                      {"provider": "anthropic-backup",
                                       "model": "claude-haiku-4-5"}]},
        "opus-stream": {"targets": [{"provider": "anthropic", "model": "claude-opus-4-1"},
                                    {"provider": "anthropic-backup",
                                     "model": "claude-sonnet-4-5"}]},
        "chat-fast": {"targets": [{"provider": "openai", "model": "gpt-4o-mini"},
                                  {"provider": "openai-backup", "model": "gpt-4.1"}]},
        "dead-first": {"targets": [{"provider": "anthropic-dead", "model": "claude-3-5-haiku"},
                                   {"provider": "anthropic", "model": "claude-3-5-haiku"}]},
    },
    # quick breakers for the test; the retry budget's floor above what one window retries,
    # so every call is served whatever the traffic rate (the budget has its unit test)
    "gateway": {"breaker_failures": 3, "breaker_open_s": 1.0, "retry_budget_min_per_minute": 60},
}
EVENT_COLUMNS = ("request_id, provider, served_model, status, outcome, stream, fallbacks, "
                 "attempts, input_tokens, output_tokens, cache_read_tokens, "
                 "cache_write_5m_tokens, cache_write_1h_tokens, service_tier, cost_usd, "
                 "received_at")


@dataclass
class Faulty:
    """The pipeline, its simulated provider's app (the billing book) and a key."""

    pipeline: Pipeline
    simulator_url: str
    simulator: Starlette
    key: str

    def fault(self, status: int, seconds: float, *models: str) -> None:
        answer = httpx.post(self.simulator_url + "/sim/faults", timeout=10, json={
            "status": status, "seconds": seconds, "models": list(models)})
        assert answer.status_code == 201, answer.text

    def clear_faults(self) -> None:
        assert httpx.delete(self.simulator_url + "/sim/faults", timeout=10).status_code == 204

    def billed(self) -> dict[str, tuple[int, Decimal]]:
        """(requests, cost) per model the simulated provider billed so far."""
        return provider_bill(self.simulator)

    def billed_since(self, before: dict[str, tuple[int, Decimal]], model: str
                     ) -> tuple[int, Decimal]:
        (requests, cost), (earlier, earlier_cost) = (
            self.billed().get(model, (0, Decimal(0))), before.get(model, (0, Decimal(0))))
        return requests - earlier, cost - earlier_cost

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(self.pipeline.gateway_url + "/metrics", timeout=10).text
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == name and labels.items() <= sample.labels.items())

    def events(self, where: str, count: int) -> list[dict[str, Any]]:
        """The ``count`` events matching ``where``, once the store has them all."""
        query = f"SELECT {EVENT_COLUMNS} FROM events FINAL WHERE {where} ORDER BY received_at"
        rows = wait_until(lambda: len(found := self.pipeline.sql(query)) >= count and found, 90,
                          message=f"{count} events where {where}")
        names = [name.strip() for name in EVENT_COLUMNS.split(",")]
        return [dict(zip(names, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, broker: str) -> Iterator[Faulty]:
    app = create_provider_app()
    server = ThreadedServer(app).start()
    pipeline = Pipeline(tmp_path_factory.mktemp("fallback"), broker, server.url, CONFIG)
    pipeline.roles["gateway"].env = {"METERLINE_TEST_DEAD_KEY": "sk-nobody-listens"}
    pipeline.start()
    try:
        yield Faulty(pipeline, server.url, app, pipeline.mint_key("alice", "platform"))
    finally:
        pipeline.stop()
        server.stop()


def message(url: str, key: str, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(url + "/v1/messages", timeout=30,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      json={"model": model, "max_tokens": 24, **extra,
                            "messages": [{"role": "user", "content": "Explain the outage."}]})


class Traffic(CallerThreads):
    """Steady calls to one alias: (sent at, status, request id) of each."""

    def __init__(self, url: str, key: str, model: str, threads: int = 2) -> None:
        super().__init__(threads, join_timeout_s=30)
        self._url, self._key, self._model = url, key, model
        self._lock = threading.Lock()
        self.calls: list[tuple[float, int, str]] = []

    def call_until_stopped(self, index: int) -> None:
        while not self.stopping:
            sent = time.monotonic()
            answer = message(self._url, self._key, self._model)
            with self._lock:
                self.calls.append((sent, answer.status_code, answer.headers.get(REQUEST_ID, "")))
            time.sleep(0.05)

    def sent_after(self, moment: float) -> int:
        with self._lock:
            return sum(1 for sent, _, _ in self.calls if sent > moment)


def usage_of(row: dict[str, Any]) -> Usage:
    return Usage(input_tokens=int(row["input_tokens"]), output_tokens=int(row["output_tokens"]),
                 cache_read_tokens=int(row["cache_read_tokens"]),
                 cache_write_5m_tokens=int(row["cache_write_5m_tokens"]),
                 cache_write_1h_tokens=int(row["cache_write_1h_tokens"]),
                 source="provider", service_tier=row["service_tier"])


def assert_priced_as_served(row: dict[str, Any], book: PriceBook) -> None:
    """The row costs exactly the serving target's price for its usage; attempts add nothing."""
    at = datetime.fromisoformat(row["received_at"]).replace(tzinfo=UTC)
    quote = book.quote(row["provider"], row["served_model"], usage_of(row), at)
    assert quote is not None and Decimal(row["cost_usd"]) == quote.cost_usd > 0, row


def test_a_529_window_is_served_through_fallback_and_billed_once(faulty: Faulty) -> None:
    book = PriceBook([], KINDS)
    billed_before = faulty.billed()
    with Traffic(faulty.pipeline.gateway_url, faulty.key, "claude-sonnet") as traffic:
        wait_until(lambda: traffic.sent_after(0) >= 10, 60, message="calls before the fault")
        faulty.fault(529, 4, "claude-sonnet-4-5")
        wait_until(lambda: faulty.metric("meterline_gateway_breaker_transitions_total",
                                         provider="anthropic", model="claude-sonnet-4-5",
                                         state="closed") >= 1, 60,
                   message="the primary's breaker closed after the window")
        closed_seen = time.monotonic()
        wait_until(lambda: traffic.sent_after(closed_seen) >= 10, 60, message="calls after it")
    calls = list(traffic.calls)
    assert [status for _, status, _ in calls] == [200] * len(calls)
    rows = {row["request_id"]: row for row in faulty.events(
        "requested_model = 'claude-sonnet'", len(calls))}
    assert set(rows) == {request_id for _, _, request_id in calls}

    fell_back = [row for row in rows.values() if row["provider"] == "anthropic-backup"]
    direct = [row for row in rows.values() if row["provider"] == "anthropic"]
    assert fell_back and len(fell_back) + len(direct) == len(rows)
    chains = [orjson.loads(row["attempts"]) for row in fell_back]
    for row, chain in zip(fell_back, chains, strict=True):
        assert row["served_model"] == "claude-haiku-4-5" and int(row["fallbacks"]) == len(chain)
        assert {(a["provider"], a["model"]) for a in chain} == {("anthropic", "claude-sonnet-4-5")}
        assert all((a["status"], a["error_class"]) in {(529, "http_529"), (0, "breaker_open")}
                   for a in chain)
    tried = [a for chain in chains for a in chain if a["error_class"] == "http_529"]
    skipped = [a for chain in chains for a in chain if a["error_class"] == "breaker_open"]
    assert tried and skipped  # failed for real, then skipped while the breaker was open
    for row in direct:
        assert (row["served_model"], row["fallbacks"], row["attempts"]) == (
            "claude-sonnet-4-5", "0", "[]")
    for row in rows.values():
        assert_priced_as_served(row, book)

    # after the window the primary serves again
    after = [rows[request_id] for sent, _, request_id in calls if sent > closed_seen]
    assert after and all(row["provider"] == "anthropic" for row in after)

    # the provider billed exactly what the ledger says: each call once, no 529 billed
    for model in ("claude-sonnet-4-5", "claude-haiku-4-5"):
        served = [row for row in rows.values() if row["served_model"] == model]
        assert faulty.billed_since(billed_before, model) == (
            len(served), sum((Decimal(row["cost_usd"]) for row in served), Decimal(0)))
    assert faulty.metric("meterline_gateway_fallbacks_total", from_provider="anthropic",
                         reason="http_529") == len(tried)
    transitions = {state: faulty.metric("meterline_gateway_breaker_transitions_total",
                                        provider="anthropic", model="claude-sonnet-4-5",
                                        state=state) for state in ("open", "half_open", "closed")}
    assert transitions["open"] >= 1 and transitions["half_open"] >= 1
    print(f"\nfallback: {len(calls)} calls, all 200; {len(fell_back)} served by the backup "
          f"({len(tried)} after a 529, {len(skipped)} skips while the breaker was open); "
          f"breaker transitions {transitions}")


def read_stream(response: httpx.Response) -> bytes:
    return b"".join(response.iter_raw())


def test_a_stream_falls_back_before_its_first_byte_but_never_after(faulty: Faulty) -> None:
    book = PriceBook([], KINDS)
    url, key = faulty.pipeline.gateway_url, faulty.key
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    body = {"model": "opus-stream", "max_tokens": 24, "stream": True,
            "messages": [{"role": "user", "content": "Stream the postmortem."}]}
    billed_before = faulty.billed()
    faulty.fault(503, 30, "claude-opus-4-1")
    try:
        with httpx.stream("POST", url + "/v1/messages", json=body, headers=headers,
                          timeout=30) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            streamed = read_stream(response)
            rescued_id = response.headers[REQUEST_ID]
    finally:
        faulty.clear_faults()
    assert b'"model":"claude-sonnet-4-5"' in streamed and b"message_stop" in streamed

    # a stream cut after its first events has reached the client: not retried
    with httpx.stream("POST", url + "/v1/messages", json=body, timeout=30,
                      headers={**headers, "x-sim-cut-after": "4"}) as response:
        assert response.status_code == 200
        cut_id = response.headers[REQUEST_ID]
        with pytest.raises(httpx.RemoteProtocolError):
            read_stream(response)

    rows = {row["request_id"]: row for row in faulty.events(
        f"request_id IN ('{rescued_id}', '{cut_id}')", 2)}
    rescued, cut = rows[rescued_id], rows[cut_id]
    assert (rescued["provider"], rescued["served_model"], rescued["stream"], rescued["outcome"]) == (
        "anthropic-backup", "claude-sonnet-4-5", "true", "ok")
    assert [(a["provider"], a["model"], a["status"], a["error_class"])
            for a in orjson.loads(rescued["attempts"])] == [
        ("anthropic", "claude-opus-4-1", 503, "http_503")]
    assert_priced_as_served(rescued, book)
    assert (cut["provider"], cut["served_model"], cut["outcome"], cut["fallbacks"],
            cut["attempts"]) == ("anthropic", "claude-opus-4-1", "upstream_error", "0", "[]")
    # billed: the rescue once on the backup, the cut stream once on the primary; no 503
    assert [faulty.billed_since(billed_before, model)[0]
            for model in ("claude-opus-4-1", "claude-sonnet-4-5")] == [1, 1]


def test_openai_stream_and_an_unreachable_target_fall_back(faulty: Faulty) -> None:
    book = PriceBook([], KINDS)
    url, key = faulty.pipeline.gateway_url, faulty.key
    faulty.fault(429, 30, "gpt-4o-mini")
    try:
        # the body is re-encoded for the backup with the usage request the gateway adds,
        # and the client still gets the stream a direct call sends (no usage chunk)
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": "chat-fast", "stream": True, "max_tokens": 24,
                                "messages": [{"role": "user", "content": "Rate limited?"}]}
                          ) as response:
            assert response.status_code == 200
            streamed = read_stream(response)
            chat_id = response.headers[REQUEST_ID]
    finally:
        faulty.clear_faults()
    assert b'"model":"gpt-4.1"' in streamed and b"[DONE]" in streamed
    assert b'"usage"' not in streamed

    unreachable = message(url, key, "dead-first")
    assert unreachable.status_code == 200 and unreachable.json()["model"] == "claude-3-5-haiku"
    dead_id = unreachable.headers[REQUEST_ID]

    rows = {row["request_id"]: row for row in faulty.events(
        f"request_id IN ('{chat_id}', '{dead_id}')", 2)}
    chat, dead = rows[chat_id], rows[dead_id]
    assert (chat["provider"], chat["served_model"], int(chat["output_tokens"]) > 0) == (
        "openai-backup", "gpt-4.1", True)
    assert [(a["provider"], a["status"], a["error_class"])
            for a in orjson.loads(chat["attempts"])] == [("openai", 429, "http_429")]
    assert_priced_as_served(chat, book)
    assert (dead["provider"], dead["served_model"], dead["fallbacks"]) == (
        "anthropic", "claude-3-5-haiku", "1")
    assert [(a["provider"], a["status"], a["error_class"])
            for a in orjson.loads(dead["attempts"])] == [
        ("anthropic-dead", 502, "UpstreamUnavailable")]
