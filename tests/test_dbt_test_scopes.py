"""The dbt data tests that guard the marts, run by dbt on a tiny loaded landing folder.

- A fact mart's test scoped `loaded_after:<table>.<column> passed:<time>` (macros/test_scope.sql) reads, in an
  incremental build, the rows loaded since the stored build and those that passed the cutoff since its day:
  a bad row loaded before that build but dated after its day is found on the day it enters the fact, and a
  row with a null key appended since is found by the not_null test, which looks rows up by their time.
- `declared_types` (macros/declared_types.sql) fails customer_features' build when the built table's columns
  drift from the YAML's, custom_* columns aside.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from acrm_pipelines.ingest.loader import load_all
from acrm_pipelines.settings import DBT_PROJECT_DIR

CUSTOMERS = [
    ["customer_id", "first_name", "registered_at", "custom_tier"],
    ["c1", "Anna", "2024-01-01 10:00:00", "gold"],
    ["c2", "Boris", "2024-06-01 10:00:00", ""],
]
ORDERS = [
    ["order_id", "customer_id", "ordered_at", "total_amount", "status"],
    ["o1", "c1", "2025-02-01 12:00:00", "10.50", "completed"],
    ["o2", "c2", "2025-02-20 12:00:00", "3.00", "cancelled"],
]

INSERT = "INSERT INTO raw.orders (order_id, customer_id, ordered_at, total_amount, status) VALUES"


def write(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def loaded(tmp: Path) -> Path:
    landing = tmp / "landing"
    write(landing / "customers.csv", CUSTOMERS)
    write(landing / "orders.csv", ORDERS)
    db = tmp / "acrm.duckdb"
    load_all(db, landing)
    return db


def dbt(tmp: Path, db: Path, *args: str, vars: dict) -> dict[str, dict]:
    """`dbt <args>` on the repo's project with its own target and log folders: test name -> its result."""
    env = {
        **os.environ,
        "ACRM_DUCKDB_PATH": str(db),
        "DBT_TARGET_PATH": str(tmp / "target"),
        "DBT_LOG_PATH": str(tmp / "logs"),
        "ACRM_DUCKDB_MEMORY_LIMIT": "1GB",
    }
    results_file = tmp / "target" / "run_results.json"
    results_file.unlink(missing_ok=True)  # never a previous invocation's
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *args, "--vars", json.dumps(vars), "--profiles-dir", ".",
         "--project-dir", "."],
        cwd=DBT_PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout[-3000:] + done.stderr[-2000:]
    assert results_file.exists(), output
    results = {r["unique_id"].split(".")[2]: r for r in json.loads(results_file.read_text())["results"]}
    assert not [name for name, r in results.items() if r["status"] == "error"], output
    assert done.returncode == 0 or args[0] == "test", output  # a failing test is what some tests expect
    return results


def status(results: dict[str, dict]) -> dict[str, tuple[str, int | None]]:
    return {name: (r["status"], r.get("failures")) for name, r in results.items()}


def test_fact_tests_read_appended_rows_and_rows_that_passed_the_cutoff(tmp_path: Path) -> None:
    db = loaded(tmp_path)
    with duckdb.connect(str(db)) as con:
        # Rows the loader would never let in, written past it: loaded before the stored build of 2025-03-01
        # but dated after that day (a backfill's later day, a row loaded ahead of its day) ...
        con.execute(f"{INSERT} ('o_ahead', 'c1', '2025-03-05 09:00:00', NULL, 'completed')")
        stored_rows = con.execute("SELECT count(*) FROM raw.orders").fetchone()[0]
        # ... and a late row with no key, appended after that build, dated long before it.
        con.execute(f"{INSERT} (NULL, 'c2', '2024-07-01 09:00:00', 1.00, 'completed')")
    since = {"features_since": "2025-03-01", "features_rows": {"orders": stored_rows}}
    tests = ["fct_orders,test_name:not_null", "fct_orders,test_name:unique"]

    # The same day again: the row dated ahead is not in the fact yet; the appended one is found by its time.
    dbt(tmp_path, db, "run", "--select", "+fct_orders", vars={"as_of": "2025-03-01"})
    got = status(dbt(tmp_path, db, "test", "--select", *tests, vars={"as_of": "2025-03-01", **since}))
    assert got["not_null_fct_orders_order_id"] == ("fail", 1)
    assert got["not_null_fct_orders_total_amount"] == ("pass", 0)
    assert got["not_null_fct_orders_customer_id"] == ("pass", 0)

    # A later day: the row dated ahead has passed the cutoff since the stored build, so it is read now.
    dbt(tmp_path, db, "run", "--select", "+fct_orders", vars={"as_of": "2025-03-10"})
    got = status(dbt(tmp_path, db, "test", "--select", *tests, vars={"as_of": "2025-03-10", **since}))
    assert got["not_null_fct_orders_total_amount"] == ("fail", 1)
    assert got["not_null_fct_orders_order_id"] == ("fail", 1)
    assert got["unique_fct_orders_order_id"] == ("pass", 0)

    # A full build (no features_since) reads every row.
    got = status(dbt(tmp_path, db, "test", "--select", *tests, vars={"as_of": "2025-03-10"}))
    assert got["not_null_fct_orders_total_amount"] == ("fail", 1)


def test_declared_types_hold_customer_features_to_its_yaml(tmp_path: Path) -> None:
    db = loaded(tmp_path)
    day = {"as_of": "2025-03-01"}
    dbt(tmp_path, db, "run", "--select", "+customer_features", vars=day)
    with duckdb.connect(str(db), read_only=True) as con:
        columns = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'marts' AND table_name = 'customer_features'"
            ).fetchall()
        )
    assert columns["custom_tier"] == "VARCHAR"  # a custom column: built, not declared, allowed

    select = ["--select", "customer_features,test_name:declared_types"]
    (result,) = dbt(tmp_path, db, "test", *select, vars=day).values()
    assert (result["status"], result["failures"]) == ("pass", 0)

    with duckdb.connect(str(db)) as con:
        con.execute("ALTER TABLE marts.customer_features ALTER orders_count TYPE BIGINT")
        con.execute("ALTER TABLE marts.customer_features DROP COLUMN city")
        con.execute("ALTER TABLE marts.customer_features ADD COLUMN score DOUBLE")
    (result,) = dbt(tmp_path, db, "test", *select, "--store-failures", vars=day).values()
    assert (result["status"], result["failures"]) == ("fail", 3)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(f"SELECT column_name, problem FROM {result['relation_name']} ORDER BY 1").fetchall()
    assert rows == [
        ("city", "declared but not built"),
        ("orders_count", "built with another type"),
        ("score", "built but not declared"),
    ]
