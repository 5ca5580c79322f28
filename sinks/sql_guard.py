"""The parser gate for typed SQL: what the engine's grants do not refuse on chdb.

Grants (``engine_config``) and the read-only session (``client.connect``) are
the defence: no source privilege, ``readonly=1``, no Python table function.
Three things reach past them in clickhouse-local (tested in
tests/security/test_store_sql.py):

- ``SELECT ... INTO OUTFILE '/path'`` writes a file: it is clickhouse-local's
  client side, outside access control and ``readonly``;
- the scalar ``file('/path')`` reads any file: local mode skips the
  ``user_files_path`` check and the FILE grant;
- ``a; b``: clickhouse-local runs every statement of a multi-statement text.

``checked_sql`` closes them with ClickHouse's *own* parser, run by the same
engine, so there is no second grammar to disagree with it:

1. ``formatQuerySingleLine({sql:String})``: the text is a bound parameter, so
   it is parsed and never executed; more than one statement is a syntax error
   ("Multi-statements are not allowed"). The result is the query as
   ClickHouse re-prints it from its AST, and that text, never the caller's,
   is what runs afterwards: what was inspected is what executes.
2. ``INTO OUTFILE`` in the re-printed text is refused (a string literal with
   those words is refused too; a false refusal is the safe side).
3. ``EXPLAIN AST`` of the re-printed text (parse only: no analysis, no
   schema inference, so nothing is read or fetched): the statement must be a
   read (SELECT, EXPLAIN, DESCRIBE, SHOW, EXISTS); every table function (a
   ``Function`` node directly under a ``TableExpression``) must be in
   ``ALLOWED_TABLE_FUNCTIONS``; no ``Function`` node anywhere may be named in
   ``FORBIDDEN_FUNCTIONS``.

It relies on two properties of ClickHouse: ``formatQuery`` output parses back
to the same AST (ClickHouse's own test suite checks this for every query it
has), and ``EXPLAIN AST`` prints every node of the parsed tree, one per line,
indented by depth. Function names in ClickHouse are case-sensitive (``FILE``
is an unknown function), so names are compared exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Table functions that generate data and reach nothing: no file, network or other store.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "generate_series",
    "values", "view", "null",
})
#: Scalar functions that read the file system in clickhouse-local despite the grants.
FORBIDDEN_FUNCTIONS = frozenset({"file"})
#: AST roots of statements that only read.
_READ_STATEMENTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "Explain ",
                    "DescribeQuery", "ShowTables", "ShowColumns", "ShowCreate", "ExistsTable",
                    "ExistsDatabase", "ExistsView", "ExistsDictionary")
_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_FUNCTION = re.compile(r"^Function (\S+)")


class SqlRefused(Exception):
    """The query reaches something typed SQL may not; the message says what."""


def checked_sql(client: Any, sql: str, parameters: Mapping[str, Any] | None = None) -> str:
    """The one statement to run for ``sql``, or ``SqlRefused``.

    ``client`` is the read-only client; ``parameters`` are the query's bound
    values (``EXPLAIN AST`` needs them to parse ``{name:Type}``). ClickHouse
    errors (a syntax error) propagate to the caller as ClickHouse raised them.
    """
    printed: bytes = client.raw_query("SELECT formatQuerySingleLine({sql:String})",
                                      parameters={"sql": sql}, fmt="RawBLOB")
    statement = printed.decode("utf-8").strip()
    if _OUTFILE.search(statement):
        raise SqlRefused("INTO OUTFILE is not allowed: results are returned, never written "
                         "on the store's host")
    tree: bytes = client.raw_query(f"EXPLAIN AST {statement}", parameters=dict(parameters or {}),
                                   fmt="TSVRaw")
    refuse_ast(tree.decode("utf-8"))
    return statement


def refuse_ast(tree: str) -> None:
    """``SqlRefused`` unless the ``EXPLAIN AST`` text ``tree`` is a read within the lists."""
    lines = [line for line in tree.splitlines() if line.strip()]
    if not lines or not lines[0].startswith(_READ_STATEMENTS):
        root = lines[0].split(" ")[0] if lines else "nothing"
        raise SqlRefused(f"only read statements (SELECT, EXPLAIN, DESCRIBE, SHOW, EXISTS) may "
                         f"run here, not {root}")
    parents: list[str] = []
    for line in lines:
        depth = len(line) - len(line.lstrip(" "))
        node = line.strip()
        del parents[depth:]
        match = _FUNCTION.match(node)
        if match:
            name = match.group(1)
            if name in FORBIDDEN_FUNCTIONS:
                raise SqlRefused(f"function {name}() reads the store's file system and is not "
                                 "allowed")
            if parents and parents[-1].startswith("TableExpression") \
                    and name not in ALLOWED_TABLE_FUNCTIONS:
                raise SqlRefused(
                    f"table function {name}() is not allowed: typed SQL may read the store's "
                    f"tables and {', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))}, never files, "
                    "the network or other databases")
        parents.append(node)
