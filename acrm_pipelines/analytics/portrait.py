"""Segment portraits (docs/analytics.md, "Segment portraits"): per segment evaluated on a day, and per arm,
its size and what its members weigh in the customer base, from the features of that day."""

from __future__ import annotations

from datetime import date

import duckdb

from acrm_pipelines.segments.members import members_sql

TABLE = "analytics.segment_portrait"
DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    as_of DATE, segment_key VARCHAR, arm VARCHAR, size BIGINT, share_of_base DOUBLE, share_of_revenue_365d DOUBLE,
    avg_check_365d DOUBLE, orders_per_customer_365d DOUBLE, entered BIGINT, exited BIGINT)"""

# A row per segment (arm empty, with entered and exited) and per arm of a split one.
PORTRAIT_SQL = f"""
    WITH m AS ({members_sql("SELECT segment_key, as_of AS day FROM segments.evaluations WHERE as_of = ?")}),
    f AS (SELECT customer_id, amount_365d, orders_365d FROM marts.customer_features),
    base AS (SELECT count(*) AS customers, sum(amount_365d) AS revenue FROM f),
    cut AS (
        SELECT m.segment_key, m.arm, grouping(m.arm) AS whole, count(*) AS size,
            sum(f.amount_365d) AS revenue, sum(f.orders_365d) AS orders
        FROM m JOIN f ON f.customer_id = m.customer_id
        GROUP BY GROUPING SETS ((m.segment_key), (m.segment_key, m.arm)))
    SELECT ?::DATE AS as_of, c.segment_key, CASE WHEN c.whole = 0 THEN c.arm END AS arm, c.size,
        c.size / nullif(b.customers, 0) AS share_of_base,
        c.revenue / nullif(b.revenue, 0) AS share_of_revenue_365d,
        c.revenue / nullif(c.orders, 0) AS avg_check_365d,
        c.orders / c.size AS orders_per_customer_365d,
        CASE WHEN c.whole = 1 THEN e.entered END AS entered, CASE WHEN c.whole = 1 THEN e.exited END AS exited
    FROM cut c CROSS JOIN base b
    LEFT JOIN segments.evaluations e ON e.segment_key = c.segment_key AND e.as_of = ?
    WHERE c.whole = 1 OR c.arm IS NOT NULL"""


def portrait(con: duckdb.DuckDBPyConnection, as_of: date) -> None:
    """Replace the day's rows with those of the segments evaluated on `as_of` (a backfill leaves every day)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS analytics")
    con.execute(DDL)
    con.execute(f"DELETE FROM {TABLE} WHERE as_of = ?", [as_of])
    con.execute(f"INSERT INTO {TABLE} {PORTRAIT_SQL}", [as_of, as_of, as_of])
