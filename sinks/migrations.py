"""Versioned, idempotent schema migrations, applied at start-up.

Migrations are the ``migrations/NNNN_name.sql`` files beside this module,
applied in order. Each statement is written to be re-runnable (``IF NOT
EXISTS``), and each applied file is recorded in ``schema_migrations``, so a
crash half-way through a file re-applies that file safely on the next start.
Placeholders: ``{db}``, ``{events_ttl_days}``.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from meterline.schemas import ClickHouseSettings

from .errors import MigrationFailed, StoreUnavailable, store_errors

log = logging.getLogger(__name__)


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in the order they apply."""
    folder = resources.files(__package__).joinpath("migrations")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def migrate(client: Any, settings: ClickHouseSettings, database: str | None = None) -> list[str]:
    """Apply pending migrations to ``database`` (default: the configured one); return their names."""
    db = database or settings.database
    with store_errors("creating migration ledger"):
        client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        client.command(f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
                       "(name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
                       "ENGINE = ReplacingMergeTree ORDER BY name")
        applied = {row[0] for row in client.query(
            f"SELECT name FROM {db}.schema_migrations FINAL").result_rows}
    done = []
    for name, sql in migration_files():
        if name in applied:
            continue
        text = sql.replace("{db}", db).replace("{events_ttl_days}", str(settings.events_ttl_days))
        for statement in _statements(text):
            try:
                with store_errors(f"migration {name}"):
                    client.command(statement)
            except StoreUnavailable as exc:
                raise MigrationFailed(str(exc)) from exc
        client.insert(f"{db}.schema_migrations", [[name]], column_names=["name"])
        log.info("applied migration %s to %s", name, db)
        done.append(name)
    return done
