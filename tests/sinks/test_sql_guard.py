"""The parser gate on ClickHouse's own EXPLAIN AST: which trees it lets through.

``refuse_ast`` is pure, so the trees here are the text the engine prints;
``checked_sql`` runs against the real engine (the read-only client). The
attack catalogue through the endpoint is tests/security/test_store_sql.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from meterline.schemas import ClickHouseSettings, StoreSettings
from meterline.sinks import SqlRefused, checked_sql, connect
from meterline.sinks.sql_guard import refuse_ast

NESTED = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function view (children 1)
       ExpressionList (children 1)
        SelectWithUnionQuery (children 1)
         ExpressionList (children 1)
          SelectQuery (children 2)
           ExpressionList (children 1)
            Asterisk
           TablesInSelectQuery (children 1)
            TablesInSelectQueryElement (children 1)
             TableExpression (children 1)
              Function {inner} (children 1)
               ExpressionList (children 1)
                Literal UInt64_1
"""


def test_a_table_function_is_judged_at_any_depth() -> None:
    refuse_ast(NESTED.format(inner="numbers"))
    with pytest.raises(SqlRefused, match=r"table function s3\(\) is not allowed"):
        refuse_ast(NESTED.format(inner="s3"))


def test_scalar_functions_pass_unless_forbidden_and_siblings_do_not_count_as_parents() -> None:
    tree = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Function {name} (children 1)
     ExpressionList (children 1)
      Literal 'x'
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier events
"""
    refuse_ast(tree.format(name="lower"))  # a scalar in the SELECT list, not a table function
    with pytest.raises(SqlRefused, match=r"file\(\)"):
        refuse_ast(tree.format(name="file"))


@pytest.mark.parametrize("root", ["UseQuery system", "Set", "KillQueryQuery", "InsertQuery", ""])
def test_only_read_statements_pass(root: str) -> None:
    with pytest.raises(SqlRefused, match="only read statements"):
        refuse_ast(root)


@pytest.fixture
def reader(chdb_settings: ClickHouseSettings) -> Any:
    client = connect(chdb_settings, readonly=True, limits=StoreSettings())
    yield client
    client.close()


@pytest.mark.store
def test_what_runs_is_clickhouse_s_own_reprint_of_the_one_statement(reader: Any) -> None:
    assert checked_sql(reader, "select  1 -- a comment\n") == "SELECT 1"
    assert checked_sql(reader, "SELECT {v:String}", {"v": "x"}) == "SELECT {v:String}"
    with pytest.raises(Exception, match="Multi-statements are not allowed"):
        checked_sql(reader, "SELECT 1; SELECT 2")
    with pytest.raises(SqlRefused, match="INTO OUTFILE"):
        checked_sql(reader, "SELECT 1 INTO OUTFILE '/tmp/x'")
