"""The shared catalogue helpers of acrm_pipelines/sql.py, and the old file layouts read through them."""

from __future__ import annotations

import duckdb

from acrm_pipelines.features import incremental
from acrm_pipelines.sql import columns


def test_columns_name_each_column_with_its_type_in_table_order() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA s")
    con.execute("CREATE TABLE s.t (b VARCHAR, a DECIMAL(18, 2), c DATE)")
    con.execute("CREATE VIEW s.v AS SELECT c, b FROM s.t")
    assert list(columns(con, "s", "t").items()) == [("b", "VARCHAR"), ("a", "DECIMAL(18,2)"), ("c", "DATE")]
    assert list(columns(con, "s", "v").items()) == [("c", "DATE"), ("b", "VARCHAR")]
    assert columns(con, "s", "missing") == {}
    assert columns(con, "other", "t") == {}


def test_files_recorded_before_the_newer_columns_read_as_unknown() -> None:
    """A file loaded before `raw.loads` had its `base`, and one whose builds were recorded before
    `features.builds` had `history`: no base (a full build follows), and no history written."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.loads (table_name VARCHAR)")
    con.execute("CREATE TABLE raw.orders AS SELECT range AS order_id FROM range(3)")
    assert incremental.inputs(con, ("orders", "events")) == {"orders": (None, 3), "events": (None, 0)}
    con.execute("ALTER TABLE raw.loads ADD COLUMN base VARCHAR")
    con.execute("INSERT INTO raw.loads VALUES ('orders', 'b1')")
    assert incremental.inputs(con, ("orders",)) == {"orders": ("b1", 3)}

    con.execute("CREATE SCHEMA features")
    con.execute(incremental.DDL[1])  # the table as first created, without `history`
    assert not incremental._has_history_column(con)
    con.execute(incremental.DDL[2])
    assert incremental._has_history_column(con)
