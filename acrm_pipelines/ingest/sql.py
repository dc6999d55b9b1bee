"""Quoting helpers: every name or text that reaches SQL goes through sqlglot, never raw f-strings."""

from __future__ import annotations

from sqlglot import exp


def ident(name: str) -> str:
    """A quoted DuckDB identifier (file headers are untrusted text)."""
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def lit(value: str) -> str:
    """A DuckDB string literal."""
    return exp.Literal.string(value).sql("duckdb")


def table(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"
