"""Helpers for SQL written as text outside dbt. Quoting: every name or text from a file or a definition that
reaches such SQL goes through these (sqlglot's quoting), never a raw f-string. SQL built as a tree (the
segment compiler, segments/compile.py) uses sqlglot's expressions directly."""

from __future__ import annotations

import duckdb
from sqlglot import exp


def ident(name: str) -> str:
    """A quoted DuckDB identifier (file headers are untrusted text)."""
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def lit(value: str | int | float | bool | None) -> str:
    """A DuckDB literal: a quoted string, a number, TRUE/FALSE or NULL."""
    return exp.convert(value).sql("duckdb")


def table(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def columns(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> dict[str, str]:
    """The columns of a table or view as the DuckDB file has them: name → SQL type, in table order; empty
    when there is no such relation."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()
    return dict(rows)


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    # fetchall, not fetchone: DuckDB refuses con.sql() while a result of execute() is not read to its end.
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
        ).fetchall()[0][0]
    )
