"""Typed SQL on the store: no file, network or other database; limits that hold; bound values.

Each table function is tried twice: through the endpoint (all three defences)
and straight on the read-only client (the engine's own grants and
``readonly=1`` alone), so each layer is shown to refuse on its own. A canary
file the store can read and an HTTP probe that counts hits make a leak
visible, not only an error code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import ClickHouseError

from meterline.reports.budget_spend import dig_in_sql
from meterline.sinks import QueryError, remote_query
from tests.harness import TEST_STORE_READ_TOKEN as READ
from tests.security.conftest import CANARY, LIMITS, Probe, Store

pytestmark = pytest.mark.store


def table_functions(canary: Path, probe: str) -> dict[str, str]:
    """Every table function that reaches files, the network, a process or another store."""
    url = f"{probe}/leak"
    return {
        "file": f"file('{canary}', 'LineAsString')",
        "fileCluster": f"fileCluster('default', '{canary}', 'LineAsString')",
        "url": f"url('{url}', 'LineAsString')",
        "urlCluster": f"urlCluster('default', '{url}', 'LineAsString')",
        "s3": f"s3('{probe}/bucket/key', 'LineAsString')",
        "s3Cluster": f"s3Cluster('default', '{probe}/bucket/key', 'LineAsString')",
        "gcs": f"gcs('{probe}/bucket/key', 'LineAsString')",
        "remote": "remote('127.0.0.1:9000', system.one)",
        "remoteSecure": "remoteSecure('127.0.0.1:9440', system.one)",
        "cluster": "cluster('default', system.one)",
        "mysql": "mysql('127.0.0.1:3306', 'd', 't', 'u', 'p')",
        "postgresql": "postgresql('127.0.0.1:5432', 'd', 't', 'u', 'p')",
        "mongodb": "mongodb('127.0.0.1:27017', 'd', 'c', 'u', 'p', 'x String')",
        "redis": "redis('127.0.0.1:6379', 'k', 'k String')",
        "sqlite": f"sqlite('{canary}', 't')",
        "jdbc": "jdbc('jdbc:mysql://127.0.0.1/d', 'd', 't')",
        "odbc": "odbc('DSN=x', 'd', 't')",
        "hdfs": "hdfs('hdfs://127.0.0.1:9000/x', 'LineAsString')",
        "azureBlobStorage": f"azureBlobStorage('{probe}/a', 'c', 'b', 'LineAsString')",
        "iceberg": f"iceberg('{probe}/bucket/table')",
        "deltaLake": f"deltaLake('{probe}/bucket/table')",
        "hudi": f"hudi('{probe}/bucket/table')",
        "executable": "executable('cat', 'LineAsString', 'x String')",
        "input": "input('x String')",
        "Python": "Python(CANARY)",
        "merge": "merge('system', '^one$')",
        "loop": f"loop(file('{canary}', 'LineAsString'))",
        "view_over_file": f"view(SELECT * FROM file('{canary}', 'LineAsString'))",
    }


#: ``input`` needs an INSERT, ``merge`` reads local tables only: the engine allows
#: neither to leak, and the gate refuses them anyway (not in its allowlist).
ENGINE_REFUSES = set(table_functions(Path("/x"), "http://x")) - {"merge"}


def query(store: Store, sql: str, **params: str) -> str:
    return remote_query(store.url, sql, "TabSeparated", token=READ, parameters=params).decode()


@pytest.mark.parametrize("name", sorted(table_functions(Path("/x"), "http://x")))
def test_every_table_function_is_refused_by_the_endpoint(store: Store, ssrf_probe: Probe,
                                                         name: str) -> None:
    call = table_functions(store.canary_file, ssrf_probe.url)[name]
    for sql in (f"SELECT * FROM {call} LIMIT 1", f"DESCRIBE TABLE {call}",
                f"SELECT count() FROM (SELECT 1) AS a JOIN {call} AS b ON 1",
                f"WITH t AS (SELECT * FROM {call}) SELECT * FROM t",
                f"SELECT 1 WHERE 1 IN (SELECT 1 FROM {call})"):
        with pytest.raises(QueryError, match="not allowed") as refused:
            query(store, sql)
        assert CANARY not in str(refused.value)
    assert ssrf_probe.hits == []


@pytest.mark.parametrize("name", sorted(ENGINE_REFUSES))
def test_the_engine_alone_refuses_every_source(store: Store, ssrf_probe: Probe,
                                               name: str) -> None:
    """Without the parser gate: grants (no SOURCES), readonly=1, no Python table function."""
    call = table_functions(store.canary_file, ssrf_probe.url)[name]
    for sql in (f"SELECT * FROM {call} LIMIT 1", f"DESCRIBE TABLE {call}"):
        if name in ("input", "Python", "executable") and sql.startswith("DESCRIBE"):
            continue  # these have no schema to infer; SELECT is the attack
        with pytest.raises(ClickHouseError) as refused:
            store.reader.raw_query(sql, fmt="TabSeparated")
        assert CANARY not in str(refused.value)
    assert ssrf_probe.hits == []


def test_the_gate_closes_what_clickhouse_local_does_not_check(store: Store,
                                                              tmp_path: Path) -> None:
    canary = store.canary_file
    with pytest.raises(QueryError, match=r"file\(\) reads the store's file system"):
        query(store, f"SELECT file('{canary}')")
    with pytest.raises(QueryError, match=r"file\(\)"):
        query(store, f"SELECT `file`('{canary}') AS x")
    written = tmp_path / "written-by-the-store.tsv"
    with pytest.raises(QueryError, match="INTO OUTFILE is not allowed"):
        query(store, f"SELECT 1 INTO OUTFILE '{written}'")
    with pytest.raises(QueryError, match="INTO OUTFILE"):
        query(store, f"SELECT 1 INTO OUTFILE '{written}' APPEND")
    assert not written.exists()
    with pytest.raises(QueryError, match="Multi-statements are not allowed") as multi:
        query(store, f"SELECT 1; SELECT file('{canary}')")
    assert CANARY not in str(multi.value)
    for statement in ("USE system", "SET max_result_rows = 0", "KILL QUERY WHERE 1",
                      "SYSTEM FLUSH LOGS"):
        with pytest.raises(QueryError):
            query(store, statement)


@pytest.mark.parametrize("sql", [
    "INSERT INTO events (request_id) VALUES ('x')",
    "CREATE TABLE t (x UInt8) ENGINE = Memory",
    "CREATE TEMPORARY TABLE t (x UInt8)",
    "DROP TABLE events",
    "ALTER TABLE events DELETE WHERE 1",
    "TRUNCATE TABLE events",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_result_rows = 0",
    "SELECT 1 SETTINGS max_execution_time = 0",
    "SELECT 1 SETTINGS allow_python_table_function = 1",
    "SELECT 1 SETTINGS allow_introspection_functions = 1",
])
def test_no_write_ddl_or_setting_change(store: Store, sql: str) -> None:
    with pytest.raises(QueryError):
        query(store, sql)
    assert query(store, "SELECT count() FROM system.tables WHERE database = currentDatabase() "
                        "AND name = 'events'") == "1\n"


def test_an_oversized_query_is_413_before_it_is_read(store: Store) -> None:
    big = "SELECT 1 -- " + "x" * LIMITS.max_query_bytes
    with pytest.raises(QueryError, match=r"query too large.*store\.max_query_bytes"):
        query(store, big)


def test_limits_refuse_cleanly_with_the_setting_to_change(store: Store) -> None:
    assert query(store, f"SELECT count() FROM numbers({LIMITS.max_result_rows})") == "1000\n"
    with pytest.raises(QueryError, match=r"store\.max_result_rows"):
        query(store, f"SELECT number FROM numbers({LIMITS.max_result_rows + 1})")
    # checked per block: the second 100 KB block passes the 64 KB limit, 4 rows in all
    wide = "SELECT repeat('x', 50000) FROM numbers(2)"
    with pytest.raises(QueryError, match=r"store\.max_result_bytes.*max bytes"):
        query(store, f"{wide} UNION ALL {wide}")
    with pytest.raises(QueryError, match=r"store\.max_query_time_s"):
        query(store, "SELECT count() FROM numbers(1000000000000)")


def test_a_refused_result_never_reaches_the_next_caller(store: Store) -> None:
    """chdb keeps what an over-limit query streamed and prepends it to the next answer;
    the store drains it, so the next query answers only itself."""
    wide = "SELECT repeat('x', 50000) FROM numbers(2)"
    for _ in range(3):
        with pytest.raises(QueryError, match=r"store\.max_result_bytes"):
            query(store, f"{wide} UNION ALL {wide}")
        assert query(store, "SELECT 42") == "42\n"
        assert query(store, "SELECT {v:String}", v="mine") == "mine\n"


def test_values_are_bound_never_spliced(store: Store) -> None:
    hostile = "x' OR 1=1) UNION ALL SELECT file('/etc/passwd') --\\"
    assert query(store, "SELECT {v:String} = 'x', length({v:String})", v=hostile) == (
        f"0\t{len(hostile)}\n")
    assert query(store, "SELECT count() FROM events WHERE team = {team:String}",
                 team=hostile) == "0\n"
    with pytest.raises(QueryError, match="unknown query argument"):
        remote_query(store.url.replace("/query", "") + "/query?evil=1#", "SELECT 1",
                     token=READ)


def test_a_slack_dig_in_command_binds_its_values(store: Store, tmp_path: Path) -> None:
    """The budget alert's "Dig in" line is a ``meterline sql`` command with ``--param``s."""
    import shlex
    from datetime import UTC, datetime

    from meterline.reports.budget_period import BudgetPeriod
    from meterline.reports.budget_spend import SpendWindow

    now = datetime(2026, 11, 10, 9, tzinfo=UTC)
    window = SpendWindow.of(BudgetPeriod.containing(now, "month", "UTC"), now, now)
    command = shlex.split(dig_in_sql("team", "o'neil); DROP TABLE events --", window))
    assert command[:2] == ["meterline", "sql"]
    params = dict(arg.removeprefix("--param=").split("=", 1) for arg in command[2:-1])
    assert params["subject"] == "o'neil); DROP TABLE events --"
    assert query(store, command[-1], **params) == ""
