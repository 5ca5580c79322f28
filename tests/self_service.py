"""Team leads serving themselves, shared by the key API, CLI and Keys page tests.

``start_leads`` runs a real pipeline (broker, chdb store, simulated provider)
with a platform admin key minted by the CLI with the deployment's
configuration (``--admin``), and a team_admin key for "payments" minted by it
over ``/admin/keys``: the starting point of a team lead with no broker access.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.harness import REPO_ROOT, Pipeline, wait_until


@dataclass(frozen=True, slots=True)
class Leads:
    """The pipeline, its platform admin key and the payments team admin's key and id."""

    pipeline: Pipeline
    admin_key: str
    lead_key: str
    lead_id: str

    def api(self, method: str, path: str, key: str | None, body: Any = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, self.pipeline.gateway_url + path, headers=headers,
                             json=body, timeout=30)

    def mint(self, key: str, **fields: Any) -> dict[str, Any]:
        made = self.api("POST", "/admin/keys", key, fields)
        assert made.status_code == 201, made.text
        answer: dict[str, Any] = made.json()
        return answer


def cli(config: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterline.cli.main", "--config", str(config),
                           "keys", *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=60, env={**os.environ, **(env or {})})


def mint_platform_admin(pipeline: Pipeline) -> str:
    made = cli(pipeline.config, "create", "--user", "root", "--team", "platform", "--admin")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def chat(leads: Leads, key: str) -> httpx.Response:
    return httpx.post(leads.pipeline.gateway_url + "/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o-mini", "max_tokens": 16,
                            "messages": [{"role": "user", "content": "hello"}]})


def actors(pipeline: Pipeline, key_id: str, count: int) -> list[list[str]]:
    """(action, actor) of ``key_id``'s events in ``key_events``, once ``count`` are stored."""
    query = (f"SELECT action, actor FROM key_events FINAL WHERE key_id = '{key_id}' "
             "ORDER BY version")
    rows: list[list[str]] = wait_until(lambda: len(found := pipeline.sql(query)) == count
                                       and found, 30, message=f"{count} events of {key_id}")
    return rows


def start_leads(workdir: Path, broker: str, simulator: str) -> Iterator[Leads]:
    """The pipeline and its two admin keys, for a module fixture; stopped after."""
    pipeline = Pipeline(workdir, broker, simulator).start()
    try:
        admin_key = mint_platform_admin(pipeline)
        made = Leads(pipeline, admin_key, "", "").mint(admin_key, user="omar", team="payments",
                                                       name="lead", team_admin=True)
        yield Leads(pipeline, admin_key, made["key"], made["id"])
    finally:
        pipeline.stop()
