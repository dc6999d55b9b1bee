"""Whether a night's features can be built from the stored ones, recomputing only what changed.

A build is incremental (dbt vars `features_since` and `features_rows`, macros/incremental_features.sql)
when `marts.customer_features` holds an earlier day (or the same one, run again), that day's build is
recorded in `features.builds` with the same dbt code, and every raw table has only had rows appended
since (its load `base`, the signature of its last full load, is the same). The build then recomputes the customers of
`int_customers_affected`: those with a row that crossed the cutoff or a window start between the two
days, or that was loaded after the stored build (rowid at or past the recorded row count). Anything else
(a first build, an earlier day, a full reload, new dbt code) is a full build, and the run log says why.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb

from acrm_pipelines.settings import DBT_PROJECT_DIR
from acrm_pipelines.sql import columns, table_exists

SCHEMA = "features"
BUILDS = f"{SCHEMA}.builds"
DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {BUILDS} (
        as_of DATE NOT NULL, code VARCHAR NOT NULL, table_name VARCHAR NOT NULL, base VARCHAR, rows BIGINT NOT NULL)""",
    # Whether the build wrote the history too (a file recorded before this column: no).
    f"ALTER TABLE {BUILDS} ADD COLUMN IF NOT EXISTS history BOOLEAN",
]
# The raw tables the features read (products only through the order lines: its base alone matters).
TABLES = ("customers", "orders", "order_lines", "products", "events", "messages", "bonus_transactions")
AFFECTED = "intermediate.int_customers_affected"
RAW_TESTS = "resource_type:test,path:models/staging"  # the tests on the staging views, over raw rows only
FEATURES = "marts.customer_features"


@dataclass(frozen=True)
class Plan:
    as_of: date
    since: date | None = None  # the stored features' day, when only what changed since is recomputed
    reason: str = ""  # why the build is a full one
    rows: dict[str, int] = field(default_factory=dict)  # each raw table's rows at the stored build
    raw_unchanged: bool = False  # incremental, and not one raw row added since the stored build
    history: bool = False  # incremental, and the stored build wrote the history too

    def dbt_vars(self) -> dict[str, Any]:
        out: dict[str, Any] = {"as_of": self.as_of.isoformat()}
        if self.since is not None:
            out |= {"features_since": self.since.isoformat(), "features_rows": self.rows}
            # The history may then be handed the changed customers alone (macros/features_history.sql).
            out |= {"features_history": True} if self.history else {}
        return out

    def excluded(self) -> list[str]:
        """What the build leaves out, as dbt selectors: tests whose result cannot differ from the stored build's,
        which ran them and passed (a build that fails a test is not recorded). Incremental: the dbt code is the
        same, so the unit tests; and with no raw row added, the staging tests, which read nothing else."""
        if self.since is None:
            return []
        return ["resource_type:unit_test"] + ([RAW_TESTS] if self.raw_unchanged else [])

    def describe(self) -> str:
        if self.since is None:
            return f"features of {self.as_of}: a full build ({self.reason})"
        return f"features of {self.as_of}: the customers whose rows changed since {self.since}"


def code_hash(analytics: bool = False, paths: tuple[str, ...] = ()) -> str:
    """The dbt project's models, macros and settings: a change to any of them makes the next build full. The
    features' leaves out the analytics models (the features build does not run them); the analytics' is of
    everything (their models read the features' staging views and macros). With `paths` (relative to the
    project), of those files only."""
    if paths:
        files = [DBT_PROJECT_DIR / path for path in paths]
    else:
        files = [DBT_PROJECT_DIR / "dbt_project.yml"]
        for folder in ("models", "macros"):
            files += sorted(p for p in (DBT_PROJECT_DIR / folder).rglob("*") if p.suffix in {".sql", ".yml"})
        if not analytics:
            files = [p for p in files if not p.is_relative_to(DBT_PROJECT_DIR / "models" / "analytics")]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(DBT_PROJECT_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    return table_exists(con, *relation.split("."))


def _has_history_column(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the record says if each build wrote the history (not in a file recorded before it did)."""
    return "history" in columns(con, *BUILDS.split("."))


def inputs(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...] = TABLES) -> dict[str, tuple[str | None, int]]:
    """Per raw table: (the base of its load, its rows now); (None, 0) when it is not loaded."""
    bases: dict[str, str | None] = {}
    if "base" in columns(con, "raw", "loads"):  # not in a file loaded before loads had a base
        bases = dict(con.execute("SELECT table_name, base FROM raw.loads").fetchall())
    out = {}
    for table in tables:
        rows = con.execute(f"SELECT count(*) FROM raw.{table}").fetchone()[0] if _exists(con, f"raw.{table}") else 0
        out[table] = (bases.get(table), int(rows))
    return out


def plan(con: duckdb.DuckDBPyConnection, as_of: date) -> Plan:
    """How the features of `as_of` are built, from what the file holds."""
    if not _exists(con, BUILDS) or not _exists(con, FEATURES):
        return Plan(as_of, reason="no features are stored yet")
    recorded = con.execute(f"SELECT as_of, code, table_name, base, rows FROM {BUILDS}").fetchall()
    history = _has_history_column(con) and bool(con.execute(f"SELECT bool_and(history) FROM {BUILDS}").fetchone()[0])
    stored = con.execute(f"SELECT max(as_of) FROM {FEATURES}").fetchone()[0]
    if not recorded or stored is None or {r[0] for r in recorded} != {stored}:
        return Plan(as_of, reason=f"the stored features (of {stored}) are not those of a recorded build")
    if as_of < stored:
        return Plan(as_of, reason=f"the stored features are of {stored}, a later day")
    if recorded[0][1] != code_hash():
        return Plan(as_of, reason="the dbt project changed since the stored build")
    then = {table: (base, rows) for _, _, table, base, rows in recorded}
    now = inputs(con)
    if reason := not_appended(then, now):
        return Plan(as_of, reason=reason)
    unchanged = all(now[table][1] == then[table][1] for table in TABLES)
    rows = {table: then[table][1] for table in TABLES}
    return Plan(as_of, since=stored, rows=rows, raw_unchanged=unchanged, history=history)


def not_appended(then: dict[str, tuple[str | None, int]], now: dict[str, tuple[str | None, int]]) -> str:
    """Why the raw tables `now` (per table: the base of its load, its rows) are not those recorded `then` with
    rows appended ("" when they are): what an incremental build may start from."""
    for table in now:
        if table not in then:
            return f"raw.{table} was not recorded at the stored build"
        (base_then, rows_then), (base_now, rows_now) = then[table], now[table]
        if base_then is None or base_now != base_then or rows_now < rows_then:
            return f"raw.{table} was reloaded in full since the stored build"
    return ""


def record(con: duckdb.DuckDBPyConnection, as_of: date, history: bool) -> None:
    """Note the build of `as_of` just made: what the next one compares with (`history`: it wrote the history too)."""
    for statement in DDL:
        con.execute(statement)
    now = inputs(con)
    con.begin()
    con.execute(f"DELETE FROM {BUILDS}")
    con.executemany(
        f"INSERT INTO {BUILDS} (as_of, code, table_name, base, rows, history) VALUES (?, ?, ?, ?, ?, ?)",
        [[as_of, code_hash(), table, base, rows, history] for table, (base, rows) in now.items()],
    )
    con.commit()


def affected(con: duckdb.DuckDBPyConnection) -> int:
    """The customers the last incremental build recomputed."""
    return int(con.execute(f"SELECT count(*) FROM {AFFECTED}").fetchone()[0]) if _exists(con, AFFECTED) else 0
