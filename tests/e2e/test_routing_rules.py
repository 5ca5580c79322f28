"""Routing rules end to end (issue 20): shadow, then enforce, on real parts.

The roles run as processes on a real broker and ClickHouse (chdb in the
store), upstream the session's simulated provider. Two rules:

- ``short-to-haiku`` (enforce): platform's Anthropic calls asking for at most
  256 output tokens go to the ``haiku`` alias instead of the model they name;
- ``watch-mini`` (shadow): payments' OpenAI calls to ``gpt-4o`` are recorded
  as calls ``gpt-4o-mini`` could serve, and served as asked.

Costs are checked against the real price book for the usage the ledger holds,
and the chargeback's savings against sums over ``events FINAL``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterline.processors.price_book import PriceBook
from meterline.schemas import Usage
from tests.harness import REPO_ROOT, STORE_TOKEN_ENV, Pipeline, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

CONFIG = {
    "models": {"haiku": {"provider": "anthropic", "model": "claude-haiku-4-5"}},
    "routing_rules": [
        {"name": "short-to-haiku", "mode": "enforce",
         "match": {"teams": ["platform"], "max_tokens_at_most": 256},
         "target": {"model": "haiku"}},
        {"name": "watch-mini", "mode": "shadow",
         "match": {"teams": ["payments"], "models": ["gpt-4o"]},
         "target": {"provider": "openai", "model": "gpt-4o-mini"}},
    ],
}
COLUMNS = ("request_id, provider, served_model, routing_rule, routing_mode, "
           "counterfactual_provider, counterfactual_model, shadow_rule, shadow_provider, "
           "shadow_model, input_tokens, output_tokens, cache_read_tokens, "
           "cache_write_5m_tokens, cache_write_1h_tokens, toString(cost_usd), "
           "toString(counterfactual_cost_usd), toString(shadow_cost_usd)")
NAMES = [name.strip().removeprefix("toString(").removesuffix(")") for name in COLUMNS.split(",")]
BOOK = PriceBook([], {"openai": "openai", "anthropic": "anthropic"})


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory, broker: str,
           simulator: str) -> Iterator[Pipeline]:
    pipeline = Pipeline(tmp_path_factory.mktemp("rules"), broker, simulator, CONFIG).start()
    try:
        yield pipeline
    finally:
        pipeline.stop()


def event(pipeline: Pipeline, request_id: str) -> dict[str, Any]:
    query = f"SELECT {COLUMNS} FROM events FINAL WHERE request_id = '{request_id}'"
    rows = wait_until(lambda: pipeline.sql(query), 90, message=f"the event of {request_id}")
    return dict(zip(NAMES, rows[0], strict=True))


def usage(row: dict[str, Any]) -> Usage:
    return Usage(input_tokens=int(row["input_tokens"]), output_tokens=int(row["output_tokens"]),
                 cache_read_tokens=int(row["cache_read_tokens"]),
                 cache_write_5m_tokens=int(row["cache_write_5m_tokens"]),
                 cache_write_1h_tokens=int(row["cache_write_1h_tokens"]), source="provider")


def price(provider: str, model: str, row: dict[str, Any]) -> Decimal:
    quote = BOOK.quote(provider, model, usage(row), datetime.now(UTC))
    assert quote is not None, model
    return quote.cost_usd


def message(pipeline: Pipeline, key: str, max_tokens: int) -> httpx.Response:
    return httpx.post(pipeline.gateway_url + "/v1/messages", timeout=30,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      json={"model": "claude-sonnet-4-5", "max_tokens": max_tokens,
                            "messages": [{"role": "user", "content": "Summarise the diff."}]})


def chat(pipeline: Pipeline, key: str, model: str) -> httpx.Response:
    return httpx.post(pipeline.gateway_url + "/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "Name the file."}]})


def test_a_shadow_rule_records_its_decision_and_cost_and_changes_nothing(
        routed: Pipeline) -> None:
    key = routed.mint_key("pat", "payments")
    answer = chat(routed, key, "gpt-4o")
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"].startswith("gpt-4o") and "mini" not in answer.json()["model"]
    row = event(routed, answer.headers["x-meterline-request-id"])
    assert (row["provider"], row["served_model"]) == ("openai", "gpt-4o")
    assert (row["routing_rule"], row["routing_mode"], row["shadow_rule"]) == (
        "", "shadow", "watch-mini")
    assert (row["shadow_provider"], row["shadow_model"]) == ("openai", "gpt-4o-mini")
    assert Decimal(row["cost_usd"]) == price("openai", "gpt-4o", row) > 0
    assert Decimal(row["shadow_cost_usd"]) == price("openai", "gpt-4o-mini", row)
    assert Decimal(row["shadow_cost_usd"]) < Decimal(row["cost_usd"])
    assert row["counterfactual_cost_usd"] == row["cost_usd"]  # nothing was moved
    # a call the rule does not match carries no routing record at all
    other = chat(routed, key, "gpt-4.1")
    plain = event(routed, other.headers["x-meterline-request-id"])
    assert (plain["routing_mode"], plain["shadow_rule"], plain["shadow_cost_usd"]) == (
        "", "", "0")


def test_an_enforce_rule_serves_on_the_cheaper_target_and_the_chargeback_shows_the_saving(
        routed: Pipeline) -> None:
    key = routed.mint_key("alice", "platform")
    short = message(routed, key, 200)
    assert short.status_code == 200, short.text
    assert short.json()["model"] == "claude-haiku-4-5"  # served by the rule's target
    row = event(routed, short.headers["x-meterline-request-id"])
    assert (row["provider"], row["served_model"]) == ("anthropic", "claude-haiku-4-5")
    assert (row["routing_rule"], row["routing_mode"]) == ("short-to-haiku", "enforce")
    assert (row["counterfactual_provider"], row["counterfactual_model"]) == (
        "anthropic", "claude-sonnet-4-5")
    assert Decimal(row["cost_usd"]) == price("anthropic", "claude-haiku-4-5", row)
    # the counterfactual: the requested model's price for the same usage
    assert Decimal(row["counterfactual_cost_usd"]) == price("anthropic", "claude-sonnet-4-5", row)
    assert Decimal(row["counterfactual_cost_usd"]) > Decimal(row["cost_usd"])
    # a long answer does not match: served as asked
    long = message(routed, key, 2000)
    assert long.json()["model"] == "claude-sonnet-4-5"
    assert event(routed, long.headers["x-meterline-request-id"])["routing_mode"] == ""
    # the month's chargeback books the saving, exact to the ledger
    saved = routed.scalar("SELECT toString(sum(counterfactual_cost_usd - cost_usd)) "
                          "FROM events FINAL WHERE routing_rule != ''")
    would = routed.scalar("SELECT toString(sum(cost_usd - shadow_cost_usd)) "
                          "FROM events FINAL WHERE shadow_rule != ''")
    month = f"{datetime.now(UTC):%Y-%m}"
    report = subprocess.run([sys.executable, "-m", "meterline.cli.main", "--config",
                             str(routed.config), "report", "chargeback", "--month", month,
                             "--no-deliver", "--output-dir", str(routed.workdir / "reports")],
                            capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=180, env={**os.environ, **STORE_TOKEN_ENV})
    assert report.returncode == 0, report.stderr
    line = next(text for text in report.stdout.splitlines() if text.startswith("routing saved"))
    reported_saved, _, rest = line.removeprefix("routing saved ").partition(" USD in ")
    assert Decimal(reported_saved) == Decimal(saved) > 0
    reported_would = rest.split("would save ")[1].removesuffix(" USD more")
    assert Decimal(reported_would) == Decimal(would)
    html = next(path for path in report.stdout.splitlines() if path.endswith(".html"))
    text = Path(html).read_text(encoding="utf-8")
    assert "short-to-haiku" in text and "watch-mini" in text
