"""The real store process runs the chargeback as its job when the CLI asks for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meterline.embedded import free_port, wait_for_port
from tests.harness import REPO_ROOT, STORE_TOKEN_ENV, Role, unique_prefix, write_config

pytestmark = [pytest.mark.store, pytest.mark.e2e]


def test_the_cli_runs_the_chargeback_inside_a_running_store(broker: str, tmp_path: Path) -> None:
    store_port = free_port()
    config = write_config(tmp_path / "meterline.yaml", bootstrap=broker, prefix=unique_prefix("cb"),
                          chdb_path=tmp_path / "clickhouse", gateway_port=free_port(),
                          store_port=store_port, demo_upstream="",
                          extra={"timezone": "Europe/Berlin",
                                 "reports": {"output_dir": str(tmp_path / "reports")}})
    store = Role("store", config, tmp_path).start()
    try:
        wait_for_port("127.0.0.1", store_port, 60)
        result = subprocess.run(
            [sys.executable, "-m", "meterline.cli.main", "--config", str(config), "report",
             "chargeback", "--month", "2026-10", "--no-deliver"],
            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
            env={**os.environ, **STORE_TOKEN_ENV})
        assert result.returncode == 0, result.stderr + store.log()[-3000:]
        assert "in the store" in result.stdout and "0 requests" in result.stdout
        csv_path = tmp_path / "reports" / "chargeback" / "2026-10" / "chargeback-2026-10.csv"
        assert csv_path.exists()
        rows = csv_path.read_text(encoding="utf-8-sig").splitlines()
        assert {row.split(",")[3] for row in rows[1:-1]} == {"platform", "payments"}
        assert rows[-1].startswith("total,2026-10,")
    finally:
        store.stop()
