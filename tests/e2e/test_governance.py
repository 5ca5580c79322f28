"""Governance end to end (issue 19): the key registry, limits and budgets across two gateways.

Every test runs the real roles as processes on a real broker and ClickHouse (chdb in the
store), with the simulated provider upstream, and a second gateway process beside the
first (own port, own spool) sharing the registry and the store's ledger.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterline.embedded import free_port, wait_for_port
from tests.backends import Backend
from tests.harness import REPO_ROOT, STORE_TOKEN_ENV, Pipeline, Role, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

OPUS = "claude-opus-4-1"
PROMPT = "Refactor the billing module and explain each change. " * 40
GOVERNED_TEAMS = [
    {"name": "platform", "cost_centre": "CC-4100", "lead": "dana@example.com"},
    {"name": "payments", "cost_centre": "CC-5200", "lead": "omar@example.com",
     "budget_usd": 1, "budget_mode": "block"},
]


class Governed:
    """A pipeline plus a second gateway; ``cli`` runs ``meterline`` against their config."""

    def __init__(self, pipeline: Pipeline, second_port: int) -> None:
        self.pipeline = pipeline
        self.urls = (pipeline.gateway_url, f"http://127.0.0.1:{second_port}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "meterline.cli.main", "--config",
                               str(self.pipeline.config), *args], capture_output=True, text=True,
                              cwd=REPO_ROOT, timeout=60, env={**os.environ, **STORE_TOKEN_ENV})

    def mint(self, *args: str) -> str:
        result = self.cli("keys", "create", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]


def _start_governed(tmp_path: Path, bootstrap: str, simulator: str, embedded: bool,
                    second_env: dict[str, str] | None = None) -> Iterator[Governed]:
    pipeline = Pipeline(tmp_path, bootstrap, simulator, {"teams": GOVERNED_TEAMS},
                        embedded=embedded).start()
    port = free_port()
    second = Role("gateway", pipeline.config, tmp_path, name="gateway-2", env={
        "METERLINE_GATEWAY__PORT": str(port),
        "METERLINE_GATEWAY__SPOOL_DIR": str(tmp_path / "spool-2"), **(second_env or {})})
    second.start()
    try:
        wait_for_port("127.0.0.1", port, 60)
        yield Governed(pipeline, port)
    finally:
        second.stop()
        pipeline.stop()


@pytest.fixture
def governed(tmp_path: Path, backend: Backend, simulator: str) -> Iterator[Governed]:
    yield from _start_governed(tmp_path, backend.bootstrap_servers, simulator,
                               backend.kind == "tansu")


@pytest.fixture
def governed_tansu(tmp_path: Path, broker: str, simulator: str) -> Iterator[Governed]:
    yield from _start_governed(tmp_path, broker, simulator, True,
                               {"METERLINE_GOVERNANCE__ON_UNAVAILABLE": "closed"})


def chat(url: str, key: str, *, max_tokens: int = 64, model: str = "gpt-4o-mini"
         ) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "max_tokens": max_tokens,
                            "messages": [{"role": "user", "content": "hello"}]})


def message(url: str, key: str, *, max_tokens: int = 64, model: str = OPUS) -> httpx.Response:
    return httpx.post(url + "/v1/messages", timeout=30,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      json={"model": model, "max_tokens": max_tokens,
                            "messages": [{"role": "user", "content": PROMPT}]})


def stored(pipeline: Pipeline, request_id: str) -> list[list[str]]:
    return pipeline.sql(f"SELECT error_class, status, key_id FROM events FINAL "
                        f"WHERE request_id = '{request_id}'")


def test_revoke_takes_effect_on_the_second_gateway_within_5_s(governed: Governed) -> None:
    key = governed.mint("--user", "alice", "--team", "platform", "--name", "cursor")
    for url in governed.urls:
        assert chat(url, key).status_code == 200
    key_id = next(line.split("\t")[0] for line in
                  governed.cli("keys", "list").stdout.splitlines() if "cursor" in line)
    revoked = governed.cli("keys", "revoke", key_id, "--reason", "leaked in a gist")
    assert revoked.returncode == 0, revoked.stderr
    since = time.monotonic()
    refusal = wait_until(lambda: (r := chat(governed.urls[1], key)).status_code == 401 and r,
                         5.0, interval_s=0.05, message="the revocation on gateway 2")
    assert time.monotonic() - since < 5.0
    error = refusal.json()["error"]
    assert error["code"] == "key_revoked" and key_id in error["message"]
    anthropic = wait_until(lambda: (r := message(governed.urls[0], key)).status_code == 401 and r,
                           5.0, interval_s=0.05, message="the revocation on gateway 1")
    assert anthropic.json()["error"]["type"] == "authentication_error"
    # the refused call is on the books with its reason, and the key events with who did them
    request_id = refusal.headers["x-meterline-request-id"]
    assert wait_until(lambda: stored(governed.pipeline, request_id), 30) == [
        ["KeyRevoked", "401", key_id]]
    events = wait_until(lambda: len(rows := governed.pipeline.sql(
        f"SELECT action, actor, reason FROM key_events FINAL WHERE key_id = '{key_id}' "
        "ORDER BY version")) == 2 and rows, 30)
    assert [row[0] for row in events] == ["minted", "revoked"]
    assert all(row[1].startswith("cli:") for row in events)
    assert events[1][2] == "leaked in a gist"
    assert "revoked" in governed.cli("keys", "list").stdout


def test_rotation_keeps_both_keys_valid_through_the_grace_window(
        governed_tansu: Governed) -> None:
    governed = governed_tansu
    old = governed.mint("--user", "bob", "--team", "platform", "--name", "ci")
    key_id = next(line.split("\t")[0] for line in
                  governed.cli("keys", "list").stdout.splitlines() if "\tci\t" in line)
    rotated = governed.cli("keys", "rotate", key_id, "--grace", "4s")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip().splitlines()[-1]
    for url in governed.urls:
        assert chat(url, new).status_code == 200  # a key minted a moment ago works at once
        assert chat(url, old).status_code == 200  # still inside its grace
    expired = wait_until(lambda: (r := chat(governed.urls[1], old)).status_code == 401 and r, 10)
    error = expired.json()["error"]
    assert error["code"] == "key_expired" and "successor" in error["message"]
    assert chat(governed.urls[1], new).status_code == 200
    actions = wait_until(lambda: {row[0] for row in governed.pipeline.sql(
        f"SELECT action FROM key_events FINAL WHERE key_id = '{key_id}'")} >= {
        "minted", "rotated", "expired"}, 30)
    assert actions


def test_model_not_allowed_is_refused_in_the_callers_shape(governed_tansu: Governed) -> None:
    governed = governed_tansu
    key = governed.mint("--user", "carol", "--team", "platform", "--models", "gpt-4o*",
                        "--providers", "openai")
    assert chat(governed.urls[0], key).status_code == 200
    refused = message(governed.urls[1], key)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert "may not call provider 'anthropic'" in refused.json()["error"]["message"]
    request_id = refused.headers["x-meterline-request-id"]
    assert wait_until(lambda: stored(governed.pipeline, request_id), 30)[0][:2] == [
        "ModelNotAllowed", "403"]


def test_rate_limit_holds_across_instances_with_retry_after(governed_tansu: Governed) -> None:
    governed = governed_tansu
    key = governed.mint("--user", "dave", "--team", "platform", "--rpm", "4")
    answers = [chat(governed.urls[i % 2], key) for i in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    limited = chat(governed.urls[0], key)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    body = limited.json()["error"]
    assert (body["type"], body["code"]) == ("requests", "rate_limit_exceeded")
    anthropic = message(governed.urls[1], key)
    assert anthropic.status_code == 429 and "retry-after" in anthropic.headers
    assert anthropic.json()["error"]["type"] == "rate_limit_error"
    request_id = limited.headers["x-meterline-request-id"]
    assert wait_until(lambda: stored(governed.pipeline, request_id), 30)[0][:2] == [
        "RateLimited", "429"]
    wait_until(lambda: int(governed.pipeline.scalar(
        "SELECT count() FROM events WHERE error_class = 'RateLimited'")) == 2, 30)
    # the team lead sees them on the team's dashboard page, by developer and reason
    lead = governed.mint("--user", "dana", "--team", "platform")
    with httpx.Client(base_url=governed.urls[0], follow_redirects=True) as browser:
        form = browser.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        browser.post("/ui/login", data={"key": lead, "csrf": csrf.group(1)})
        page = browser.get("/ui/team/platform").text
    assert "Calls refused at the gateway" in page
    refused_row = re.search(r"<td>dave</td>\s*<td>over a rate limit</td>\s*<td[^>]*>2</td>", page)
    assert refused_row is not None, page[page.find("Calls refused"):][:1500]


async def _spend_until_blocked(urls: tuple[str, ...], key: str, callers: int,
                               max_tokens: int) -> dict[str, int]:
    """``callers`` concurrent callers split over ``urls``; each calls until refused 15 times
    in a row (the budget stays blocked across several ledger refreshes)."""
    counts = {"ok": 0, "blocked": 0}

    async def caller(index: int) -> None:
        url = urls[index % len(urls)]
        refusals = 0
        async with httpx.AsyncClient(timeout=30) as client:
            while refusals < 15:
                response = await client.post(
                    url + "/v1/messages",
                    headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                    json={"model": OPUS, "max_tokens": max_tokens,
                          "messages": [{"role": "user", "content": f"{index} {PROMPT}"}]})
                if response.status_code == 200:
                    counts["ok"] += 1
                    refusals = 0
                    continue
                assert response.status_code == 400, response.text
                assert "budget" in response.json()["error"]["message"]
                counts["blocked"] += 1
                refusals += 1
                await asyncio.sleep(0.1)

    await asyncio.gather(*(caller(i) for i in range(callers)))
    return counts


def test_block_budget_overshoot_is_bounded_across_two_instances(
        governed_tansu: Governed) -> None:
    """64 concurrent callers on 2 instances against the payments team's $1 block budget."""
    governed = governed_tansu
    key = governed.mint("--user", "erin", "--team", "payments")
    max_tokens = 200
    counts = asyncio.run(_spend_until_blocked(governed.urls, key, 64, max_tokens))
    assert counts["ok"] > 10 and counts["blocked"] >= 64 * 15
    pipeline = governed.pipeline
    wait_until(lambda: int(pipeline.scalar(
        "SELECT count() FROM events WHERE team = 'payments' AND status = 200")) == counts["ok"],
        60, message="every admitted call stored")
    spent = Decimal(pipeline.scalar("SELECT sum(cost_usd) FROM events FINAL "
                                    "WHERE team = 'payments'"))
    # one call's worst case, as the ledger reserves it: two prompt characters per token in,
    # max_tokens out; the bound allowed is one such call per instance
    per_call_worst = _worst_case_usd(len(f"63 {PROMPT}"), max_tokens)
    assert Decimal(1) - per_call_worst <= spent <= Decimal(1) + 2 * per_call_worst, (
        spent, per_call_worst)
    wait_until(lambda: int(pipeline.scalar(
        "SELECT count() FROM events WHERE team = 'payments' AND error_class = 'BudgetExceeded'"
    )) == counts["blocked"], 60, message="every refusal on the books")
    # finance sees them too: the month's chargeback lists the team's refused calls
    month = time.strftime("%Y-%m", time.gmtime())
    out_dir = pipeline.workdir / "reports"
    report = governed.cli("report", "chargeback", "--month", month, "--output-dir",
                          str(out_dir), "--no-deliver")
    assert report.returncode == 0, report.stderr
    html = (out_dir / "chargeback" / month / f"chargeback-{month}.html").read_text()
    assert f"{counts['blocked']:,} over a blocking budget" in html


def _worst_case_usd(prompt_chars: int, max_tokens: int) -> Decimal:
    """Opus list price: $15 per million input tokens, $75 per million output."""
    return (Decimal((prompt_chars + 1) // 2) * 15 + Decimal(max_tokens) * 75) / 1_000_000


def test_ledger_down_fails_open_or_closed_as_configured(governed_tansu: Governed) -> None:
    """Gateway 1 keeps the default (open); gateway 2 was started with on_unavailable=closed."""
    governed = governed_tansu
    key = governed.mint("--user", "frank", "--team", "platform", "--rpm", "1000")
    assert all(chat(url, key).status_code == 200 for url in governed.urls)
    governed.pipeline.roles["store"].stop()
    served = chat(governed.urls[0], key)
    assert served.status_code == 200
    refused = chat(governed.urls[1], key)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "enforcement_unavailable"
    metrics = httpx.get(governed.urls[0] + "/metrics").text
    assert 'meterline_enforcement_unavailable_total{mode="open"}' in metrics



def test_keys_survive_the_embedded_broker_forgetting_them(tmp_path: Path, own_broker: Any,
                                                          simulator: str) -> None:
    """tansu keeps nothing across a restart: a gateway started after it reads every key's
    latest state from the store (key_events), so a minted key works and a revoked one stays
    revoked."""
    pipeline = Pipeline(tmp_path, own_broker.bootstrap_servers, simulator).start()
    governed = Governed(pipeline, pipeline.gateway_port)  # one gateway: both urls are it
    try:
        kept = governed.mint("--user", "gina", "--team", "platform", "--name", "kept")
        gone = governed.mint("--user", "gina", "--team", "platform", "--name", "gone")
        listing = governed.cli("keys", "list").stdout.splitlines()
        gone_id = next(line.split("\t")[0] for line in listing if "\tgone\t" in line)
        assert governed.cli("keys", "revoke", gone_id).returncode == 0
        wait_until(lambda: pipeline.scalar("SELECT count() FROM key_events FINAL") == "3", 30)
        pipeline.roles["gateway"].stop()
        own_broker.stop()
        own_broker.start()
        pipeline.roles["gateway"] = Role("gateway", pipeline.config, tmp_path).start()
        wait_for_port("127.0.0.1", pipeline.gateway_port, 60)
        assert wait_until(lambda: chat(pipeline.gateway_url, kept).status_code == 200, 30)
        refused = chat(pipeline.gateway_url, gone)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"
    finally:
        pipeline.stop()
