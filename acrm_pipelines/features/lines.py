"""Whether the stored order lines (dbt model int_order_lines_all) can be built by appending the lines loaded since.

Every reader of the order lines (the favourites in the features, the segments' `order_lines` aggregates) joined
each line with its order and product on every read: at 10M customers, 145M lines. The model keeps that join as a
table instead, not cut at the as-of day, so that any day's build or backfill reads it as it is and a night adds
only the new lines (dbt var `lines_rows`, macros/order_lines.sql).

That is exact because the loader only ever appends lines, and a line is loaded only once its order and product
are (an orphan is quarantined until a full reload of the lines). So a build appends the lines from the recorded
rowid on when the model's code and the loads of raw order_lines, orders and products are those recorded (rows
appended, no full reload). Anything else is a full build. A build that fails leaves the record as it was: the
next one adds again lines already there, which replace themselves (the model's unique key is the rowid).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from acrm_pipelines.features.incremental import code_hash, inputs, not_appended
from acrm_pipelines.sql import table_exists

MODEL = "int_order_lines_all"
TABLE = ("intermediate", MODEL)
TABLES = ("orders", "order_lines", "products")  # the raw tables the model reads
# The model and what it reads: a change to any of them makes the next build full.
CODE = (
    f"models/intermediate/{MODEL}.sql",
    "models/staging/stg_crm__orders.sql",
    "models/staging/stg_crm__products.sql",
    "macros/order_lines.sql",
    "dbt_project.yml",
)
RECORD = "features.lines"
DDL = [
    "CREATE SCHEMA IF NOT EXISTS features",
    f"""CREATE TABLE IF NOT EXISTS {RECORD} (
        code VARCHAR NOT NULL, table_name VARCHAR NOT NULL, base VARCHAR, rows BIGINT NOT NULL)""",
]


@dataclass(frozen=True)
class Plan:
    raw: dict[str, tuple[str | None, int]] = field(default_factory=dict)  # the raw tables when planned
    rows: int | None = None  # raw.order_lines' rows the stored table holds, when only the later ones are added
    reason: str = ""  # why the build is a full one

    def dbt_vars(self) -> dict[str, Any]:
        return {"lines_rows": self.rows} if self.rows is not None else {}

    def describe(self) -> str:
        if self.rows is None:
            return f"stored order lines: a full build ({self.reason})"
        added = self.raw["order_lines"][1] - self.rows
        return f"stored order lines: {added:,} lines loaded since the last build are added"


def plan(con: duckdb.DuckDBPyConnection) -> Plan:
    """How int_order_lines_all is built, from what the file holds."""
    now = inputs(con, TABLES)
    if not table_exists(con, *TABLE) or not table_exists(con, *RECORD.split(".")):
        return Plan(now, reason="no stored order lines are recorded")
    recorded = con.execute(f"SELECT code, table_name, base, rows FROM {RECORD}").fetchall()
    if not recorded:
        return Plan(now, reason="no stored order lines are recorded")
    if recorded[0][0] != code_hash(paths=CODE):
        return Plan(now, reason="the model changed since the last build")
    then = {table: (base, rows) for _, table, base, rows in recorded}
    if reason := not_appended(then, now):
        return Plan(now, reason=reason)
    return Plan(now, rows=then["order_lines"][1])


def record(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    """After the model was built: what the next build starts from (the raw rows it was planned on; lines appended
    meanwhile are added again next time, which changes nothing)."""
    for statement in DDL:
        con.execute(statement)
    con.begin()
    con.execute(f"DELETE FROM {RECORD}")
    con.executemany(
        f"INSERT INTO {RECORD} VALUES (?, ?, ?, ?)",
        [[code_hash(paths=CODE), table, base, rows] for table, (base, rows) in plan.raw.items()],
    )
    con.commit()
