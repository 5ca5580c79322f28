"""Team leads serve themselves: ``/admin/keys`` on the gateway and ``meterline keys --gateway``.

One real pipeline for the module (``tests.self_service``): a platform admin
key minted by the CLI with ``--admin``, a "payments" team_admin key minted by
it over HTTP, and from there on everything through the gateway, as a team
lead without broker access does it. ``key_events`` in ClickHouse must name
the key that made each change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from meterline.embedded import free_port
from meterline.governance.key_admin import Actor
from meterline.ingest.auth import KeyRing
from meterline.ingest.errors import RegistryUnavailable
from meterline.ingest.key_service import KeyService
from meterline.schemas import Settings
from tests.self_service import Leads, actors, chat, cli, start_leads

pytestmark = [pytest.mark.e2e, pytest.mark.store]


@pytest.fixture(scope="module")
def leads(tmp_path_factory: pytest.TempPathFactory, broker: str, simulator: str
          ) -> Iterator[Leads]:
    yield from start_leads(tmp_path_factory.mktemp("self-service"), broker, simulator)


def test_a_team_admin_mints_lists_and_revokes_its_teams_keys(leads: Leads) -> None:
    made = leads.mint(leads.lead_key, user="priya", team="payments", name="cursor", rpm=100,
                      allowed_models=["gpt-4o*"], expires="30d")
    assert made["key"].startswith("ml-") and made["status"] == "active"
    assert made["rpm"] == 100 and made["allowed_models"] == ["gpt-4o*"] and "sha256" not in made
    for _ in range(2):  # effective on this gateway at once, and it stays so
        assert chat(leads, made["key"]).status_code == 200

    for refused in ({"user": "mallory", "team": "platform"},
                    {"user": "mallory", "team": "payments", "admin": True}):
        answer = leads.api("POST", "/admin/keys", leads.lead_key, refused)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "forbidden"

    listed = leads.api("GET", "/admin/keys", leads.lead_key).json()["keys"]
    assert {key["team"] for key in listed} == {"payments"}
    assert {made["id"], leads.lead_id} <= {key["id"] for key in listed}
    assert not any("sha256" in key for key in listed)
    assert leads.api("GET", "/admin/keys?team=platform", leads.lead_key).status_code == 403
    every = leads.api("GET", "/admin/keys", leads.admin_key).json()["keys"]
    assert {"platform", "payments"} <= {key["team"] for key in every}

    revoked = leads.api("POST", f"/admin/keys/{made['id']}/revoke", leads.lead_key,
                        {"reason": "left the team"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    refusal = chat(leads, made["key"])
    assert refusal.status_code == 401 and refusal.json()["error"]["code"] == "key_revoked"
    again = leads.api("POST", f"/admin/keys/{made['id']}/revoke", leads.lead_key)
    assert again.status_code == 400 and "already revoked" in again.json()["error"]["message"]

    lead_actor = f"key:{leads.lead_id} (omar)"
    assert actors(leads.pipeline, made["id"], 2) == [["minted", lead_actor],
                                                     ["revoked", lead_actor]]
    admin_id = next(key["id"] for key in every if key["user"] == "root")
    assert actors(leads.pipeline, leads.lead_id, 1) == [["minted", f"key:{admin_id} (root)"]]


def test_rotation_over_http_keeps_the_old_key_for_the_grace(leads: Leads) -> None:
    old = leads.mint(leads.lead_key, user="quinn", team="payments", name="ci")
    rotated = leads.api("POST", f"/admin/keys/{old['id']}/rotate", leads.lead_key,
                        {"grace": "1h"})
    assert rotated.status_code == 200, rotated.text
    answer = rotated.json()
    assert answer["old_id"] == old["id"] and answer["id"] != old["id"]
    until = datetime.fromisoformat(answer["old_valid_until"])
    assert abs(until - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)
    assert chat(leads, answer["key"]).status_code == 200
    assert chat(leads, old["key"]).status_code == 200  # inside its grace
    listed = {key["id"]: key for key in leads.api("GET", "/admin/keys", leads.lead_key)
              .json()["keys"]}
    assert listed[old["id"]]["rotated_to"] == answer["id"]
    assert listed[old["id"]]["status"].startswith("rotating")


@pytest.mark.parametrize(("method", "path", "key", "body", "status", "code"), [
    ("GET", "/admin/keys", None, None, 401, "invalid_api_key"),
    ("GET", "/admin/keys", "ml-not-a-key", None, 401, "invalid_api_key"),
    ("GET", "/admin/keys", "member", None, 403, "forbidden"),
    ("POST", "/admin/keys", "lead", {"user": "x", "team": "payments", "rpm": "lots"}, 400, None),
    ("POST", "/admin/keys", "lead", {"team": "payments"}, 400, None),
    ("POST", "/admin/keys", "lead", {"user": "x", "team": "payments", "colour": "red"}, 400,
     None),
    ("POST", "/admin/keys", "admin", {"user": "x", "team": "no-such-team"}, 400, None),
    ("POST", "/admin/keys", "lead", {"user": "x", "team": "payments", "expires": "2020-01-01"},
     400, None),
    ("POST", "/admin/keys", "lead", [1, 2], 400, None),
    ("POST", "/admin/keys/key_000000000000/revoke", "lead", None, 404, "not_found"),
    ("POST", "/admin/keys/key_000000000000/explode", "lead", None, 404, "not_found"),
    ("DELETE", "/admin/keys", "lead", None, 405, "method_not_allowed"),
])
def test_refusals_are_in_the_openai_error_shape(leads: Leads, method: str, path: str,
                                                key: str | None, body: Any, status: int,
                                                code: str | None) -> None:
    keys = {"lead": leads.lead_key, "admin": leads.admin_key}
    if key == "member":
        keys["member"] = leads.mint(leads.lead_key, user="ivy", team="payments")["key"]
    answer = leads.api(method, path, keys.get(key or "", key), body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["code"] == code


def test_the_cli_mints_lists_and_revokes_through_the_gateway(leads: Leads, tmp_path: Path
                                                             ) -> None:
    """As a team lead runs it: no deployment configuration, only the gateway and a key."""
    nowhere = tmp_path / "no-config.yaml"
    gateway = ("--gateway", leads.pipeline.gateway_url)
    env = {"METERLINE_ADMIN_KEY": leads.lead_key}
    made = cli(nowhere, "create", "--user", "sam", "--team", "payments", "--name", "laptop",
               "--rpm", "50", "--expires", "7d", *gateway, env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("ml-") and "created key_" in made.stderr
    assert chat(leads, key).status_code == 200

    listing = cli(nowhere, "list", *gateway, env=env)
    assert listing.returncode == 0, listing.stderr
    header, *rows = [line.split("\t") for line in listing.stdout.splitlines()]
    assert header == ["id", "user", "team", "repo", "name", "status", "created_at"]
    assert {row[2] for row in rows} == {"payments"}
    key_id = next(row[0] for row in rows if row[1] == "sam" and row[4] == "laptop")

    revoked = cli(nowhere, "revoke", key_id, "--reason", "lost laptop", *gateway, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert chat(leads, key).json()["error"]["code"] == "key_revoked"
    assert actors(leads.pipeline, key_id, 2) == [["minted", f"key:{leads.lead_id} (omar)"],
                                                 ["revoked", f"key:{leads.lead_id} (omar)"]]

    refused = cli(nowhere, "create", "--user", "sam", "--team", "platform", *gateway, env=env)
    assert refused.returncode == 1 and "403" in refused.stderr
    no_key = cli(nowhere, "list", *gateway, env={"METERLINE_ADMIN_KEY": ""})
    assert no_key.returncode == 2 and "METERLINE_ADMIN_KEY" in no_key.stderr
    bad = cli(nowhere, "create", "--user", "", "--team", "payments", *gateway, env=env)
    assert bad.returncode == 2 and "'user' is required" in bad.stderr


def test_a_change_the_registry_broker_does_not_take_is_a_503_and_not_applied() -> None:
    settings = Settings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"})  # no broker
    service = KeyService(settings, KeyRing([]))
    service.publish_timeout_s = 1.0
    with pytest.raises(RegistryUnavailable) as refused:
        asyncio.run(service.mint(Actor("key:key_0123456789ab (root)", None),
                                 {"user": "x", "team": "platform"}))
    assert refused.value.status == 503 and refused.value.code == "registry_unavailable"
    assert service.keyring.known() == []
