"""Migrations: versioned, idempotent, every table the docs describe."""

from __future__ import annotations

from typing import Any

import pytest

from meterline.schemas import ClickHouseSettings
from meterline.sinks import migrate

pytestmark = pytest.mark.store


def test_migrations_are_recorded_and_reapply_as_no_ops(
        clickhouse: tuple[Any, str], chdb_settings: ClickHouseSettings) -> None:
    client, database = clickhouse
    assert migrate(client, chdb_settings, database) == []
    tables = {row[0] for row in client.query(
        f"SELECT name FROM system.tables WHERE database = '{database}'").result_rows}
    assert {"events", "spend_hourly", "spend_hourly_mv", "reprice_runs", "anomalies",
            "alerts_sent", "schema_migrations"} <= tables
    engine, ttl = client.query(
        "SELECT engine, position(create_table_query, 'TTL') > 0 FROM system.tables "
        f"WHERE database = '{database}' AND name = 'events'").result_rows[0]
    assert engine == "ReplacingMergeTree" and ttl
    view = client.query(f"SELECT as_select FROM system.tables WHERE database = '{database}' "
                        "AND name = 'spend_hourly_mv'").result_rows[0][0]
    assert "version = 1" in view


def test_migration_files_reapply_cleanly_after_a_crash_mid_file(
        clickhouse: tuple[Any, str], chdb_settings: ClickHouseSettings) -> None:
    client, database = clickhouse
    client.command(f"ALTER TABLE {database}.schema_migrations DELETE "
                   "WHERE name = '0002_ledgers.sql' SETTINGS mutations_sync = 1")
    assert migrate(client, chdb_settings, database) == ["0002_ledgers.sql"]
