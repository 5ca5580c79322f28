"""meterline reprice against a running store: new prices, new versions, books still close."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal

import httpx
import orjson
import pytest
import yaml

from meterline.sinks import remote_job
from tests.harness import (
    REPO_ROOT,
    STORE_TOKEN_ENV,
    TEST_STORE_OPERATOR_TOKEN,
    Pipeline,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.store]


def reprice(pipeline: Pipeline) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "meterline.cli.main", "--config", str(pipeline.config), "reprice",
         "--from", str(date.today() - timedelta(days=1)),
         "--to", str(date.today() + timedelta(days=2)), "--store", pipeline.store_url],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
        env={**os.environ, **STORE_TOKEN_ENV})
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = orjson.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def test_reprice_through_the_store_after_a_negotiated_discount(pipeline: Pipeline) -> None:
    key = pipeline.mint_key("bob", "payments", repo="acme/pay")
    with httpx.Client(base_url=pipeline.gateway_url, timeout=30,
                      headers={"authorization": f"Bearer {key}"}) as client:
        for i in range(20):
            response = client.post("/v1/chat/completions", json={
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"call {i}"}]})
            assert response.status_code == 200
    wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == "20", 120,
               message="20 rows")
    before = Decimal(remote_job(pipeline.store_url, "reconcile", {},
                                token=TEST_STORE_OPERATOR_TOKEN)["events_cost_usd"])

    # the same prices: nothing changes, however often it runs
    assert reprice(pipeline)["events_repriced"] == 0

    # a discount signed for every day the calls were made; the store restarts with it
    config = yaml.safe_load(pipeline.config.read_text())
    config["prices"] = [{"model": "gpt-4o-mini", "provider": "openai",
                         "effective_from": "2020-01-01", "input_per_mtok": "0",
                         "output_per_mtok": "0", "discount_factor": "0.75"}]
    pipeline.config.write_text(yaml.safe_dump(config, sort_keys=False))
    store = pipeline.roles["store"]
    store.stop()
    store.start()
    wait_until(lambda: _answers(pipeline), 60, message="store back")

    first = reprice(pipeline)
    assert first["events_repriced"] == 20
    books = remote_job(pipeline.store_url, "reconcile", {}, token=TEST_STORE_OPERATOR_TOKEN)
    assert books["balanced"] and books["distinct_request_ids"] == 20
    assert Decimal(books["events_cost_usd"]) == before * Decimal("0.75")
    assert books["rollups"]["spend_hourly"]["cost_usd"] == books["events_cost_usd"]
    again = reprice(pipeline)
    assert (again["events_repriced"], again["rollup_delta_rows"]) == (0, 0)
    assert pipeline.scalar("SELECT countIf(price_source = 'override') FROM events FINAL") == "20"


def _answers(pipeline: Pipeline) -> bool:
    try:
        pipeline.scalar("SELECT 1")
    except OSError:
        return False
    return True
