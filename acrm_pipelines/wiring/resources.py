"""The DuckDB file as a Dagster resource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource


class DuckDBFile(DuckDBResource):
    """dagster-duckdb's resource, making the file's folder on the first connection: loading the
    definitions creates nothing (the UI and `dg` load them without a run)."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as con:
            yield con
