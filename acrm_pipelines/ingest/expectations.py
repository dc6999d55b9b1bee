"""Great Expectations suites for the loaded raw tables, derived from the input contract.

GX runs on pandas (the smoke-tested path for GX 1.x here) over only the columns a suite needs;
tables larger than ``max_rows`` are validated on a repeatable sample, which the result says. A table
whose load did not change since it was validated keeps that validation, and after an append only the
appended rows are validated (`validate_loaded_table`): a backfill of a year validates each load once,
and a night validates the night's rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import duckdb

from acrm_pipelines.ingest.contract import STATUSES, TableSpec
from acrm_pipelines.sql import ident, table

DEFAULT_MAX_ROWS = 2_000_000
E164 = r"^\+[1-9][0-9]{6,14}$"


@dataclass
class Validation:
    success: bool
    rows_validated: int
    sampled: bool
    results: list[dict]  # one per expectation: type, column, success, unexpected_count
    reused: bool = False  # the table's load is the one validated before: that validation stands


def build_suite(spec: TableSpec):
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"raw_{spec.name}")
    add = suite.add_expectation
    if spec.required_table:
        add(gx.expectations.ExpectTableRowCountToBeBetween(min_value=1))
    for col in spec.columns:
        if col.kind == "id" or col.must_parse:
            add(gx.expectations.ExpectColumnValuesToNotBeNull(column=col.name))
        if col.kind in ("amount", "quantity"):
            add(gx.expectations.ExpectColumnValuesToBeBetween(column=col.name, min_value=0))
        if col.kind == "status":
            add(gx.expectations.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(STATUSES)))
    if spec.unique_key:
        add(gx.expectations.ExpectColumnValuesToBeUnique(column=spec.unique_key))
    if spec.name == "customers":
        add(gx.expectations.ExpectColumnValuesToMatchRegex(column="phone_e164", regex=E164))
        add(gx.expectations.ExpectColumnValuesToMatchRegex(column="email", regex=r"^[^A-Z\s]+$"))
    return suite


def _suite_columns(suite) -> list[str]:
    return sorted({e.column for e in suite.expectations if getattr(e, "column", None)})


def validate_raw_table(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, max_rows: int = DEFAULT_MAX_ROWS, from_row: int = 0
) -> Validation:
    """Validate raw.<table>, or only its rows from the `from_row`-th on (an append's: rows are only ever
    appended to a raw table or the table is replaced, so they keep their rowid)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # Must exist before a suite is built. Personal data lives here: no usage statistics; no bars in run logs.
    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    suite = build_suite(spec)
    cols = _suite_columns(suite)
    where = f" WHERE rowid >= {int(from_row)}" if from_row else ""
    rows_sql = f"SELECT {', '.join(ident(c) for c in cols)} FROM {table('raw', spec.name)}{where}"
    rows = con.execute(f"SELECT count(*) FROM ({rows_sql})").fetchone()[0]
    sampled = rows > max_rows
    sample = f" USING SAMPLE reservoir({int(max_rows)} ROWS) REPEATABLE (42)" if sampled else ""
    # Materialized first: DuckDB 2.0 fails an internal assertion sampling a filtered subquery directly.
    frame = con.execute(f"WITH r AS MATERIALIZED ({rows_sql}) SELECT * FROM r{sample}").df()
    source = context.data_sources.add_pandas(name=f"raw_{spec.name}")
    batch_def = source.add_dataframe_asset(name=spec.name).add_batch_definition_whole_dataframe("all")
    outcome = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    results = [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column", ""),
            "success": bool(r.success),
            "unexpected_count": int((r.result or {}).get("unexpected_count") or 0),
        }
        for r in outcome.results
    ]
    return Validation(bool(outcome.success), len(frame), sampled, results)


VALIDATIONS = table("raw", "validations")


def _combined(old: Validation, new: Validation) -> Validation:
    """The validation of a table from that of its rows before an append and that of the appended rows."""
    before = {(r["expectation"], r["column"]): r for r in old.results}
    results = []
    for r in new.results:
        o = before[(r["expectation"], r["column"])]
        count = r["unexpected_count"] + o["unexpected_count"]
        results.append({**r, "success": r["success"] and o["success"], "unexpected_count": count})
    rows = old.rows_validated + new.rows_validated
    return Validation(all(r["success"] for r in results), rows, old.sampled or new.sampled, results)


def validate_loaded_table(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, max_rows: int = DEFAULT_MAX_ROWS
) -> Validation:
    """`validate_raw_table`, keyed by the table's load in raw.loads: the validation of the same load
    stands (same rows, same suite code, GX version and `max_rows`); after an append, only the appended
    rows are validated and added to the validation of the load they were appended to. Uniqueness is
    then checked within each load's new rows; the loader's own duplicate check covers the rest."""
    try:
        loaded = con.execute("SELECT signature, state FROM raw.loads WHERE table_name = ?", [spec.name]).fetchone()
    except duckdb.CatalogException:
        loaded = None
    if loaded is None:  # not loaded through raw.loads (tests, hand-made tables): nothing to key it on
        return validate_raw_table(con, spec, max_rows)
    code = hashlib.sha256(Path(__file__).read_bytes() + version("great_expectations").encode()).hexdigest()

    def key(signature: str) -> str:
        return f"{signature}:{code}:{max_rows}"

    con.execute(f"CREATE TABLE IF NOT EXISTS {VALIDATIONS} (table_name VARCHAR PRIMARY KEY, key VARCHAR, result JSON)")
    row = con.execute(f"SELECT key, result FROM {VALIDATIONS} WHERE table_name = ?", [spec.name]).fetchone()
    stored = (row[0], Validation(**json.loads(row[1]))) if row else (None, None)
    if stored[0] == key(loaded[0]):
        return dataclasses.replace(stored[1], reused=True)
    appended = json.loads(loaded[1] or "{}").get("appended")
    if appended and stored[0] == key(appended["after"]):
        new = validate_raw_table(con, spec, max_rows, from_row=appended["rows_before"])
        validation = _combined(stored[1], new) if new.rows_validated else dataclasses.replace(stored[1])
    else:
        validation = validate_raw_table(con, spec, max_rows)
    con.execute(
        f"INSERT OR REPLACE INTO {VALIDATIONS} VALUES (?, ?, ?)",
        [spec.name, key(loaded[0]), json.dumps(dataclasses.asdict(validation))],
    )
    return validation
