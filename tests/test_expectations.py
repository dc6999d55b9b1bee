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
        tail = validate_raw_table(con, ORDERS, from_row=2)  # the rows an append added: o2 and o3
        tail_sampled = validate_raw_table(con, ORDERS, max_rows=1, from_row=2)
    assert (v.sampled, v.rows_validated) == (True, 2)
    assert (tail.sampled, tail.rows_validated) == (False, 2)
    failed = {r["expectation"]: r["unexpected_count"] for r in tail.results if not r["success"]}
    assert failed == {
        "expect_column_values_to_not_be_null": 1,
        "expect_column_values_to_be_between": 1,
        "expect_column_values_to_be_in_set": 1,
    }  # o1's duplicate is before the tail: unique within it
    assert (tail_sampled.sampled, tail_sampled.rows_validated) == (True, 1)


def test_a_validation_stands_while_the_load_is_the_same_and_an_append_validates_its_rows(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    header = ["order_id", "customer_id", "ordered_at", "total_amount"]

    def orders_file(name: str, rows: list[list[str]]) -> None:
        with (landing / "orders" / name).open("w", newline="") as f:
            csv.writer(f).writerows([header, *rows])

    (landing / "orders").mkdir(parents=True)
    with (landing / "customers.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["customer_id"], ["c1"]])
    orders_file("part-1.csv", [["o1", "c1", "2024-01-01", "5"]])
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        load_table_if_changed(con, TABLES_BY_NAME["customers"], landing)
        load_table_if_changed(con, ORDERS, landing)
        first = validate_loaded_table(con, ORDERS)
        assert (first.success, first.reused, first.rows_validated) == (True, False, 1)
        # Break a row behind the loader's back: the same load keeps its validation (it is not redone) ...
        con.execute("UPDATE raw.orders SET total_amount = -1")
        assert validate_loaded_table(con, ORDERS) == type(first)(**{**vars(first), "reused": True})
        # ... an appended file's rows are validated (here two, one broken by hand after the load) and
        # added to the earlier validation; the row validated before is not read again.
        orders_file("part-2.csv", [["o2", "c1", "2024-01-02", "6"], ["o3", "c1", "2024-01-02", "7"]])
        assert load_table_if_changed(con, ORDERS, landing).appended_files == ["orders/part-2.csv"]
        con.execute("UPDATE raw.orders SET total_amount = -2 WHERE order_id = 'o3'")
        appended = validate_loaded_table(con, ORDERS)
        assert (appended.success, appended.reused, appended.rows_validated) == (False, False, 3)
        assert count_of(appended, "expect_column_values_to_be_between") == 1  # o3; o1's break stays unseen
        # A full reload (a loaded file rewritten) validates every row again.
        orders_file("part-1.csv", [["o1", "c1", "2024-01-01", "5"], ["o4", "c1", "2024-01-03", "8"]])
        assert load_table_if_changed(con, ORDERS, landing).full_reason.endswith("changed since it was loaded")
        con.execute("UPDATE raw.orders SET total_amount = -3 WHERE order_id IN ('o1', 'o4')")
        full = validate_loaded_table(con, ORDERS)
    assert (full.success, full.reused, full.rows_validated) == (False, False, 4)
    assert count_of(full, "expect_column_values_to_be_between") == 2


def count_of(validation, expectation: str) -> int:
    return next(r["unexpected_count"] for r in validation.results if r["expectation"] == expectation)
