"""Every SQL block in docs/clickhouse.md runs, read-only, against a migrated database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from meterline.schemas import ClickHouseSettings
from meterline.sinks import EventWriter, connect
from tests.harness import REPO_ROOT
from tests.sinks.events import event_messages, make_envelopes

pytestmark = pytest.mark.store

QUERIES = re.findall(r"```sql\n(.*?)```", (REPO_ROOT / "docs/clickhouse.md").read_text(),
                     flags=re.S)


def test_the_docs_have_at_least_ten_queries() -> None:
    assert len(QUERIES) >= 10


@pytest.mark.parametrize("sql", QUERIES, ids=[f"q{i + 1}" for i in range(len(QUERIES))])
def test_doc_query_runs_on_the_read_only_path(sql: str, clickhouse: tuple[Any, str],
                                              chdb_settings: ClickHouseSettings) -> None:
    client, database = clickhouse
    # the last three hours up to now, so "since the start of today" holds rows after midnight
    recent = datetime.now(UTC) - timedelta(hours=3)
    EventWriter(client, database).write(event_messages(make_envelopes(200, start=recent,
                                                                      spread_hours=3)))
    reader = connect(chdb_settings, readonly=True, database=database)
    rows = reader.query(sql).result_rows
    if "today" not in sql and "now() - INTERVAL 1 HOUR" not in sql:
        assert rows, sql
