"""Whether the analytics' incremental models can be built from their stored rows, recomputing only the customers
with an order or a message loaded since (dbt var `analytics_rows`, macros/analytics_increments.sql).

`order_touches` (which message took each order), `campaign_reach` (when each customer first reached each step
of a campaign) and `customer_order_months` (when each customer first ordered in each month) hold every day's
rows: a touch comes before its order and a first time is fixed once it happened, so they are the same as of
any later day, and the as-of day's tables (order_attribution, campaign_funnel, cohort_retention) cut them.
So unlike the features (features/incremental.py) the day does not matter: a build is incremental when the last
analytics build was recorded with the same dbt code and attribution windows, and raw orders and messages have
only had rows appended since. The record is removed before a build and written after it succeeds, so a failed,
killed or partial build makes the next one full.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb
from dagster import AssetKey

from acrm_pipelines.features.incremental import code_hash, inputs, not_appended
from acrm_pipelines.sql import table_exists

TABLES = ("orders", "messages")  # what the incremental models read
MODELS = frozenset({AssetKey("order_touches"), AssetKey("campaign_reach"), AssetKey("customer_order_months")})
BUILDS = "analytics.builds"
DDL = [
    "CREATE SCHEMA IF NOT EXISTS analytics",
    f"""CREATE TABLE IF NOT EXISTS {BUILDS} (
        code VARCHAR NOT NULL, windows VARCHAR NOT NULL,
        table_name VARCHAR NOT NULL, base VARCHAR, rows BIGINT NOT NULL)""",
]


@dataclass(frozen=True)
class Plan:
    code: str  # the dbt project's hash (features/incremental.py code_hash, analytics included)
    windows: str  # the attribution windows the build is told, as JSON
    raw: dict[str, tuple[str | None, int]]  # the raw tables when planned: recorded once the build succeeded
    since: dict[str, int] | None = None  # each raw table's rows at the recorded build, when incremental
    reason: str = ""  # why the build is a full one

    def dbt_vars(self) -> dict[str, Any]:
        return {"analytics_rows": self.since} if self.since is not None else {}

    def describe(self) -> str:
        if self.since is None:
            return f"the incremental analytics models: a full build ({self.reason})"
        return "the incremental analytics models: the customers with orders or messages loaded since the last build"


def plan(con: duckdb.DuckDBPyConnection, windows: dict[str, Any]) -> Plan:
    """How the incremental models are built, from what the file holds."""
    code, key = code_hash(analytics=True), json.dumps(windows, sort_keys=True)
    now = inputs(con, TABLES)
    if not table_exists(con, *BUILDS.split(".")):
        return Plan(code, key, now, reason="no analytics build is recorded")
    recorded = con.execute(f"SELECT code, windows, table_name, base, rows FROM {BUILDS}").fetchall()
    if not recorded:
        return Plan(code, key, now, reason="the last analytics build did not finish, or built part of them")
    if recorded[0][0] != code:
        return Plan(code, key, now, reason="the dbt project changed since the last build")
    if recorded[0][1] != key:
        return Plan(code, key, now, reason="the attribution windows changed since the last build")
    then = {table: (base, rows) for _, _, table, base, rows in recorded}
    if reason := not_appended(then, now):
        return Plan(code, key, now, reason=reason)
    return Plan(code, key, now, since={table: then[table][1] for table in TABLES})


def forget(con: duckdb.DuckDBPyConnection) -> None:
    """Before a build: until it succeeds, the stored rows are no build's."""
    for statement in DDL:
        con.execute(statement)
    con.execute(f"DELETE FROM {BUILDS}")


def record(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    """After a build of all the incremental models succeeded: what the next one starts from (the raw rows it was
    planned on; rows appended meanwhile are read again, which changes nothing)."""
    con.begin()
    con.execute(f"DELETE FROM {BUILDS}")
    con.executemany(
        f"INSERT INTO {BUILDS} VALUES (?, ?, ?, ?, ?)",
        [[plan.code, plan.windows, table, base, rows] for table, (base, rows) in plan.raw.items()],
    )
    con.commit()
