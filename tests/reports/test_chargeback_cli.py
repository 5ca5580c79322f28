"""``meterline report chargeback``: in the store when one owns the data, else here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meterline.cli.main import main
from meterline.embedded import free_port
from meterline.reports.chargeback import register_chargeback_job
from meterline.schemas import ClickHouseSettings
from meterline.simulator.organisation import Organisation
from meterline.sinks import JobRegistry, QueryServer
from tests.harness import STORE_TOKEN_ENV, store_access
from tests.reports.chargeback_data import MONTH, MONTH_START, ZURICH, call, settings_for
from tests.traffic import load_events

pytestmark = pytest.mark.store


def write_config(path: Path, chdb: ClickHouseSettings, database: str, store_port: int,
                 output_dir: Path) -> str:
    config = {"timezone": "Europe/Berlin",
              "clickhouse": {"dsn": chdb.dsn, "database": database},
              "store": {"host": "127.0.0.1", "port": store_port},
              "reports": {"output_dir": str(output_dir)},
              "teams": [{"name": ZURICH, "cost_centre": "CC-9900", "lead": "jose@example.com"}]}
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_runs_on_demand_when_no_store_is_running(clickhouse: tuple[Any, str], tmp_path: Path,
                                                 chdb_settings: ClickHouseSettings,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    client, database = clickhouse
    load_events(client, database, settings_for(Organisation.demo(seed=1)), [call(MONTH_START)])
    config = write_config(tmp_path / "m.yaml", chdb_settings, database, free_port(), tmp_path / "out")
    assert main(["--config", config, "report", "chargeback", "--month", MONTH]) == 0
    out = capsys.readouterr().out
    assert "reconciled" in out and "1 requests" in out
    csv_path = tmp_path / "out" / "chargeback" / MONTH / f"chargeback-{MONTH}.csv"
    assert str(csv_path) in out and ZURICH in csv_path.read_text(encoding="utf-8-sig")


def test_runs_in_the_store_when_one_owns_the_embedded_data(
        clickhouse: tuple[Any, str], tmp_path: Path, chdb_settings: ClickHouseSettings,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in STORE_TOKEN_ENV.items():
        monkeypatch.setenv(name, value)
    client, database = clickhouse
    settings = settings_for(Organisation.demo(seed=1),
                            clickhouse={"dsn": chdb_settings.dsn, "database": database})
    load_events(client, database, settings, [call(MONTH_START), call(MONTH_START)])
    jobs = JobRegistry()
    register_chargeback_job(jobs, settings, lambda: client)
    store = QueryServer(client, "127.0.0.1", free_port(), jobs=jobs, access=store_access())
    store.start()
    try:
        port = int(store.url.rsplit(":", 1)[1])
        config = write_config(tmp_path / "m.yaml", chdb_settings, database, port, tmp_path / "x")
        out_dir = tmp_path / "asked-for"
        assert main(["--config", config, "report", "chargeback", "--month", MONTH,
                     "--output-dir", str(out_dir), "--no-deliver"]) == 0
    finally:
        store.stop()
    out = capsys.readouterr().out
    assert "in the store" in out and "2 requests" in out
    assert (out_dir / "chargeback" / MONTH / f"chargeback-{MONTH}.csv").exists()


def test_refuses_clearly_when_the_store_does_not_offer_the_job(
        clickhouse: tuple[Any, str], tmp_path: Path, chdb_settings: ClickHouseSettings,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in STORE_TOKEN_ENV.items():
        monkeypatch.setenv(name, value)
    client, database = clickhouse
    store = QueryServer(client, "127.0.0.1", free_port(), access=store_access())
    store.start()
    try:
        port = int(store.url.rsplit(":", 1)[1])
        config = write_config(tmp_path / "m.yaml", chdb_settings, database, port, tmp_path / "out")
        assert main(["--config", config, "report", "chargeback", "--month", MONTH]) == 1
    finally:
        store.stop()
    err = capsys.readouterr().err
    assert "owns the embedded ClickHouse" in err and "does not offer the chargeback job" in err
    assert not (tmp_path / "out").exists()


def test_a_bad_month_is_an_argument_error(tmp_path: Path, chdb_settings: ClickHouseSettings,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "m.yaml", chdb_settings, "unused", free_port(), tmp_path)
    assert main(["--config", config, "report", "chargeback", "--month", "2026-13"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err
