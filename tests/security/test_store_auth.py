"""The store endpoint's credentials: who may query, who may run jobs, and what is logged.

Attacks: no credential, a wrong one, a malformed header, the read token on a
job, a token from an earlier run (replay after rotation), and the token file
of another user. Every case runs on the real ``QueryServer`` and engine.
"""

from __future__ import annotations

import http.client
import json
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meterline.cli.main import main
from meterline.schemas import ConfigError, Settings, load_settings
from meterline.schemas.store_auth import StoreRole, read_token_file, resolve_token, token_file
from meterline.services.up import _store_tokens
from meterline.sinks import QueryServer, StoreAccess
from tests.harness import TEST_STORE_OPERATOR_TOKEN as OPERATOR
from tests.harness import TEST_STORE_READ_TOKEN as READ
from tests.security.conftest import Store

pytestmark = pytest.mark.store

QUERY = "SELECT 'the-answer-only-a-credential-gets' AS secret"
ANSWER = "the-answer-only-a-credential-gets"


@dataclass
class Answer:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def post(url: str, path: str, body: str, authorization: str | None) -> Answer:
    """POST with the header exactly as given (http.client: no client-side header checks)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", path)
        if authorization is not None:
            connection.putheader("Authorization", authorization)
        connection.putheader("Content-Length", str(len(body.encode())))
        connection.endheaders(body.encode())
        response = connection.getresponse()
        return Answer(response.status, response.read().decode())
    finally:
        connection.close()


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", f"Bearer {READ[:-1]}", f"Bearer {READ}x", f"Basic {READ}",
    READ, f"Bearer {READ.upper()}", f"Token {OPERATOR}", "Bearer " + "a" * 4096,
])
@pytest.mark.parametrize("path", ["/query?format=TabSeparated", "/jobs/echo"])
def test_a_missing_wrong_or_malformed_credential_gets_401_and_no_data(
        store: Store, path: str, authorization: str | None) -> None:
    body = QUERY if path.startswith("/query") else "{}"
    response = post(store.url, path, body, authorization)
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]
    assert ANSWER not in response.text
    assert store.jobs_run == []


def test_each_credential_grants_exactly_its_role(store: Store) -> None:
    for token in (READ, OPERATOR):
        answer = post(store.url, "/query?format=TabSeparated", QUERY, f"Bearer {token}")
        assert (answer.status_code, answer.text) == (200, ANSWER + "\n")
    refused = post(store.url, "/jobs/echo", '{"x": 1}', f"Bearer {READ}")
    assert refused.status_code == 403 and "operator credential" in refused.json()["error"]
    assert store.jobs_run == []
    ran = post(store.url, "/jobs/echo", '{"x": 1}', f"bearer {OPERATOR}")
    assert (ran.status_code, ran.json()) == (200, {"ran": True})
    assert store.jobs_run == [{"x": 1}]


def test_healthz_is_open_and_answers_nothing_else(store: Store) -> None:
    health = httpx.get(store.url + "/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")
    for path in ("/healthz?query=SELECT%201", "/query?query=SELECT%201", "/"):
        assert httpx.get(store.url + path).text in ("ok\n", "not found\n")


def test_refusals_are_logged_with_reason_and_address_but_never_the_token(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "Bearer wrong-token-" + "z" * 40
    with caplog.at_level(logging.DEBUG):
        post(store.url, "/query", QUERY, None)
        post(store.url, "/query", QUERY, wrong)
        post(store.url, "/jobs/echo", "{}", f"Bearer {READ}")
        post(store.url, "/query", QUERY, f"Bearer {READ}")
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("no credential" in line and "127.0.0.1" in line for line in lines)
    assert any("wrong credential" in line and "127.0.0.1" in line for line in lines)
    assert any("may not run jobs" in line for line in lines)
    assert len(lines) == 3
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (READ, OPERATOR, wrong.split()[1]):
        assert secret not in logged


def test_a_token_from_an_earlier_run_is_refused(clickhouse: object, tmp_path: Path,
                                                store: Store) -> None:
    """Replay: ``up`` makes a new pair every run; the store of run 2 refuses run 1's tokens."""
    settings = Settings(data_dir=str(tmp_path))
    first = _store_tokens(settings)
    second = _store_tokens(settings)
    assert set(first) == set(second) == {"METERLINE_STORE__READ_TOKEN",
                                          "METERLINE_STORE__OPERATOR_TOKEN"}
    assert not set(first.values()) & set(second.values())
    assert read_token_file(tmp_path, "read") == second["METERLINE_STORE__READ_TOKEN"]
    rotated = QueryServer(store.reader, "127.0.0.1", 0, access=StoreAccess(
        read_token=second["METERLINE_STORE__READ_TOKEN"],
        operator_token=second["METERLINE_STORE__OPERATOR_TOKEN"]))
    rotated.start()
    try:
        for old in first.values():
            assert post(rotated.url, "/query", QUERY, f"Bearer {old}").status_code == 401
            assert post(rotated.url, "/jobs/echo", "{}", f"Bearer {old}").status_code == 401
        new = second["METERLINE_STORE__READ_TOKEN"]
        assert post(rotated.url, "/query", QUERY, f"Bearer {new}").status_code == 200
    finally:
        rotated.stop()


def test_a_store_without_tokens_generates_fresh_ones_each_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    first = StoreAccess.for_store(settings)
    token = read_token_file(tmp_path, "operator")
    assert token is not None and first.role_of(f"Bearer {token}") == "operator"
    second = StoreAccess.for_store(settings)
    assert second.role_of(f"Bearer {token}") is None  # the earlier start's token: refused
    assert second.role_of(f"Bearer {read_token_file(tmp_path, 'read')}") == "read"


def test_token_files_are_private_and_the_environment_wins(tmp_path: Path) -> None:
    _store_tokens(Settings(data_dir=str(tmp_path)))
    roles: tuple[StoreRole, ...] = ("read", "operator")
    for role in roles:
        path = token_file(tmp_path, role)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    from_file = Settings(data_dir=str(tmp_path))
    assert resolve_token(from_file, "read") == read_token_file(tmp_path, "read")
    configured = Settings(data_dir=str(tmp_path), store={"read_token": READ})
    assert resolve_token(configured, "read") == READ


def test_tokens_are_env_only_distinct_and_long(tmp_path: Path) -> None:
    config = tmp_path / "meterline.yaml"
    config.write_text(yaml.safe_dump({"store": {"read_token": READ, "operator_token": OPERATOR}}))
    with pytest.raises(ConfigError, match="METERLINE_STORE__READ_TOKEN") as refused:
        load_settings(str(config), environ={})
    assert READ not in str(refused.value) and OPERATOR not in str(refused.value)
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(store={"read_token": "short"})
    with pytest.raises(ValueError, match="must differ"):
        StoreAccess(read_token=READ, operator_token=READ)


def test_meterline_sql_finds_up_s_token_file_and_reports_a_wrong_one(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("METERLINE_STORE__READ_TOKEN", raising=False)
    monkeypatch.delenv("METERLINE_STORE__OPERATOR_TOKEN", raising=False)
    port = int(store.url.rsplit(":", 1)[1])
    config = tmp_path / "meterline.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "store": {"port": port}}))
    from meterline.schemas.store_auth import write_token_file
    write_token_file(tmp_path, "read", READ)
    assert main(["--config", str(config), "sql", "--format", "TabSeparated", QUERY]) == 0
    assert capsys.readouterr().out == ANSWER + "\n"
    write_token_file(tmp_path, "read", "stale-token-from-an-earlier-run-" + "q" * 20)
    assert main(["--config", str(config), "sql", QUERY]) == 1
    err = capsys.readouterr().err
    assert "wrong credential" in err and ANSWER not in err
