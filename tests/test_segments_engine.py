"""Edges where the numpy leaves could part from SQL's semantics: each case's membership is written by hand,
and the SQL that `acrm explain` prints must agree with it too."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from acrm_pipelines.segments.compile import explain_sql
from acrm_pipelines.segments.evaluate import connection_catalogue, evaluate

AS_OF = date(2024, 3, 31)


def both(con, segments, key: str) -> tuple[list[str], list[str]]:
    """(engine members, members of the segment's own SQL)."""
    engine = evaluate(con, segments, AS_OF).members(key)
    sql = explain_sql(key, segments, connection_catalogue(con), AS_OF)
    return engine, sorted(r[0] for r in con.execute(sql).fetchall())


def test_nan_in_a_double_column_orders_like_duckdb(tmp_path: Path, make_marts, segment_set) -> None:
    """DuckDB sorts NaN above every number (NaN > 5 is true, NaN = NaN too); a custom DOUBLE column may hold
    NaN when a landing value reads 'nan'."""
    con = make_marts(
        tmp_path / "db.duckdb",
        "SELECT * FROM (VALUES ('a', 'nan'::DOUBLE), ('b', 10.0), ('c', 1.0), ('d', NULL)) "
        "t(customer_id, custom_score)",
    )
    segments = segment_set(
        tmp_path,
        "key: high\nrules: {field: custom_score, op: '>', value: 5}\n---\n"
        "key: not_high\nrules: {not: {field: custom_score, op: '>', value: 5}}\n",
    )
    assert both(con, segments, "high") == (["a", "b"], ["a", "b"])
    assert both(con, segments, "not_high") == (["c", "d"], ["c", "d"])


def test_a_user_table_named_values_does_not_shadow_the_distinct_values(tmp_path: Path, make_marts, segment_set) -> None:
    con = make_marts(
        tmp_path / "db.duckdb", "SELECT * FROM (VALUES ('a', 'Kazan'), ('b', 'Omsk')) t(customer_id, city)"
    )
    con.execute("CREATE TABLE main.\"values\" AS SELECT 'Omsk' AS city")
    segments = segment_set(tmp_path, "key: kazan\nrules: {field: city, op: '=', value: Kazan}\n")
    assert both(con, segments, "kazan") == (["a"], ["a"])


def test_rows_line_up_when_the_connection_does_not_preserve_insertion_order(
    tmp_path: Path, make_marts, segment_set
) -> None:
    """Columns are read back in stored order; with preserve_insertion_order off, parallel scans could come back
    in another order. The engine turns it on for the evaluation and restores the setting."""
    n = 300_000
    con = make_marts(
        tmp_path / "db.duckdb",
        f"SELECT 'C' || lpad(i::VARCHAR, 7, '0') AS customer_id, (i % 7)::INT AS orders_count, "
        f"CASE WHEN i % 3 = 0 THEN 'Kazan' ELSE 'Omsk' END AS city FROM range({n}) t(i)",
    )
    con.execute("SET preserve_insertion_order = false")
    segments = segment_set(
        tmp_path,
        "key: s\nrules: {all: [{field: orders_count, op: '=', value: 3}, {field: city, op: '=', value: Kazan}]}\n",
    )
    engine, sql = both(con, segments, "s")
    # i % 7 == 3 and i % 3 == 0: i ≡ 3 (mod 21).
    expected = [f"C{i:07d}" for i in range(3, n, 21)]
    assert engine == expected and sql == expected
    assert con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0] is False


def test_many_values_in_a_purchase_filter(tmp_path: Path, make_marts, segment_set) -> None:
    """A filter of more values than the coded path takes goes through SQL; 40,000 values once overflowed it."""
    con = make_marts(tmp_path / "db.duckdb", "SELECT * FROM (VALUES ('a'), ('b')) t(customer_id)")
    con.execute(
        "INSERT INTO marts.fct_order_lines (order_id, customer_id, ordered_at, status, product_id, quantity, "
        "line_amount) VALUES ('1', 'a', '2024-03-30 10:00', 'completed', 'p39999', 2, 5), "
        "('2', 'b', '2024-03-30 10:00', 'completed', 'q1', 1, 5)"
    )
    products = ", ".join(f"p{i}" for i in range(40_000))
    segments = segment_set(
        tmp_path,
        f"key: s\nrules: {{purchase: {{product_id: [{products}]}}, within: 30d, sum_quantity: {{'>=': 2}}}}\n",
    )
    assert both(con, segments, "s") == (["a"], ["a"])


def test_a_segment_that_cannot_be_evaluated_fails_alone(tmp_path, make_marts, segment_set) -> None:
    """At an as-of date whose 30-day window starts before year 1, the window segment and the one built from
    it fail with the reason; the field segment is still evaluated."""
    from datetime import date

    from acrm_pipelines.segments.evaluate import evaluate

    con = make_marts(tmp_path / "db.duckdb", "SELECT 'a' AS customer_id, 150 AS total_amount UNION ALL SELECT 'b', 10")
    segments = segment_set(
        tmp_path,
        "key: big\nrules: {field: total_amount, op: '>=', value: 100}\n---\n"
        "key: buyers\nrules: {purchase: {}, within: 30d, count: {'>=': 1}}\n---\n"
        "key: big_buyers\nfrom: {intersect: [big, buyers]}\n",
    )
    result = evaluate(con, segments, date(1, 1, 5))
    assert result.failed == {
        "buyers": "OverflowError: date value out of range",
        "big_buyers": "built from segment buyers, which failed",
    }
    assert result.members("big") == ["a"]
