"""The Great Expectations checks of raw tables: what they find, their sample, and reuse per load."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from acrm_pipelines.ingest.contract import TABLES_BY_NAME
from acrm_pipelines.ingest.expectations import validate_loaded_table, validate_raw_table
from acrm_pipelines.ingest.incremental import load_table_if_changed

ORDERS = TABLES_BY_NAME["orders"]


def hand_made_orders(con: duckdb.DuckDBPyConnection) -> None:
    """raw.orders as a broken writer could leave it: one duplicate key, one null customer, one negative
    amount, one unknown status (the loader never writes these; the suite must still see them)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    con.execute(
        "CREATE OR REPLACE TABLE raw.orders AS SELECT * FROM (VALUES "
        "('o1', 'c1', TIMESTAMP '2024-01-01', 10.0, 'completed'), "
        "('o1', 'c2', TIMESTAMP '2024-01-02', 5.0, 'completed'), "
        "('o2', NULL, TIMESTAMP '2024-01-02', -3.0, 'lost'), "
        "('o3', 'c3', TIMESTAMP '2024-01-03', 7.0, 'returned')) "
        "t(order_id, customer_id, ordered_at, total_amount, status)"
    )


def test_the_suite_counts_each_broken_rule(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        hand_made_orders(con)
        v = validate_raw_table(con, ORDERS)
    assert (v.success, v.rows_validated, v.sampled) == (False, 4, False)
    failed = {(r["expectation"], r["column"]): r["unexpected_count"] for r in v.results if not r["success"]}
    assert failed == {
        ("expect_column_values_to_be_unique", "order_id"): 2,
        ("expect_column_values_to_not_be_null", "customer_id"): 1,
        ("expect_column_values_to_be_between", "total_amount"): 1,
        ("expect_column_values_to_be_in_set", "status"): 1,
    }


def test_a_big_table_is_validated_on_a_sample_that_says_so(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        hand_made_orders(con)
        v = validate_raw_table(con, ORDERS, max_rows=2)
    assert (v.sampled, v.rows_validated) == (True, 2)


def test_a_validation_stands_while_the_load_is_the_same(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "orders").mkdir(parents=True)
    with (landing / "customers.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["customer_id"], ["c1"]])
    with (landing / "orders" / "part-1.csv").open("w", newline="") as f:
        csv.writer(f).writerows(
            [["order_id", "customer_id", "ordered_at", "total_amount"], ["o1", "c1", "2024-01-01", "5"]]
        )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        load_table_if_changed(con, TABLES_BY_NAME["customers"], landing)
        load_table_if_changed(con, ORDERS, landing)
        first = validate_loaded_table(con, ORDERS)
        assert (first.success, first.reused) == (True, False)
        # Break the table behind the loader's back: the same load keeps its validation (it is not redone) ...
        con.execute("UPDATE raw.orders SET total_amount = -1")
        assert validate_loaded_table(con, ORDERS) == type(first)(**{**vars(first), "reused": True})
        # ... and a new load (here an appended file) is validated again.
        with (landing / "orders" / "part-2.csv").open("w", newline="") as f:
            csv.writer(f).writerows(
                [["order_id", "customer_id", "ordered_at", "total_amount"], ["o2", "c1", "2024-01-02", "6"]]
            )
        load_table_if_changed(con, ORDERS, landing)
        again = validate_loaded_table(con, ORDERS)
    assert (again.success, again.reused, again.rows_validated) == (False, False, 2)
    between = next(r for r in again.results if r["expectation"] == "expect_column_values_to_be_between")
    assert between["unexpected_count"] == 1  # the hand-broken row; the appended one is fine
