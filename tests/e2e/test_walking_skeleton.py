"""Issue 2's bar: one SDK call becomes a priced ClickHouse row, on real parts.

The priced-row test is part of the contract suite: it runs on the embedded tansu
broker and on Apache Kafka (``backend_pipeline``, tests/backends.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import genai_prices
import httpx
import openai
import pytest

from tests.harness import REPO_ROOT, Pipeline, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]


def test_openai_sdk_call_becomes_priced_row(backend_pipeline: Pipeline) -> None:
    pipeline = backend_pipeline
    key = pipeline.mint_key("alice", "platform", repo="acme/api")
    started = time.monotonic()
    client = openai.OpenAI(base_url=pipeline.gateway_url + "/v1", api_key=key)

    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Summarise our spend."}])
    assert reply.choices[0].message.content
    assert reply.usage is not None
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "And stream it."}],
        stream=True, stream_options={"include_usage": True}))
    streamed_usage = chunks[-1].usage
    assert streamed_usage is not None

    wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == "2", 120,
               message="two rows in ClickHouse")
    broker = "tansu" if pipeline.embedded else "kafka"
    print(f"\nwalking skeleton on {broker}: two calls stored {time.monotonic() - started:.1f}s "
          "after the first was sent")
    rows = pipeline.sql("SELECT user, team, cost_centre, repo, repo_source, tool, served_model, "
                        "input_tokens, output_tokens, cost_usd, unpriced, stream FROM events "
                        "ORDER BY request_id")
    for row, usage, stream in ((rows[0], reply.usage, "false"), (rows[1], streamed_usage, "true")):
        user, team, cost_centre, repo, repo_source, tool, model, tokens_in, tokens_out, cost, \
            unpriced, streamed = row
        assert (user, team, cost_centre, repo, repo_source, tool, model) == (
            "alice", "platform", "CC-4100", "acme/api", "key_default", "openai-python",
            "gpt-4o-mini")
        assert (int(tokens_in), int(tokens_out)) == (usage.prompt_tokens, usage.completion_tokens)
        expected = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=usage.prompt_tokens,
                               output_tokens=usage.completion_tokens),
            "gpt-4o-mini", provider_id="openai").total_price
        assert Decimal(cost) == expected > 0
        assert (unpriced, streamed) == ("false", stream)


def test_unknown_key_and_malformed_json_in_openai_error_shape(pipeline: Pipeline) -> None:
    unknown = httpx.post(pipeline.gateway_url + "/v1/chat/completions",
                         headers={"authorization": "Bearer ml-not-a-key"},
                         json={"model": "gpt-4o-mini", "messages": []})
    assert unknown.status_code == 401
    assert unknown.json()["error"]["type"] == "invalid_request_error"
    assert unknown.json()["error"]["code"] == "invalid_api_key"

    key = pipeline.mint_key("bob", "payments")
    malformed = httpx.post(pipeline.gateway_url + "/v1/chat/completions",
                           headers={"authorization": f"Bearer {key}",
                                    "content-type": "application/json"},
                           content=b'{"model": "gpt-4o-mini", "messages": [')
    assert malformed.status_code == 400
    assert "could not parse the JSON body" in malformed.json()["error"]["message"]
    assert pipeline.roles["gateway"].alive()


def test_broken_config_stops_start_up_naming_file_line_field(tmp_path: Path) -> None:
    config = tmp_path / "meterline.yaml"
    config.write_text("kafka:\n  partitions: 4\ngateway:\n  port: not-a-port\n")
    result = subprocess.run([sys.executable, "-m", "meterline.cli.main", "--config", str(config),
                             "gateway"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 2
    assert f"{config}:4: gateway.port:" in result.stderr
