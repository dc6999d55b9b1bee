"""Raw load: typing, quarantine reasons, and `loaded + quarantined == rows in the files` for every table."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.csv as pacsv
import pytest

from acrm_pipelines.ingest.contract import TABLES, TABLES_BY_NAME
from acrm_pipelines.ingest.incremental import load_table_if_changed
from acrm_pipelines.ingest.loader import LoadError, LoadResult, load_all, load_table


@pytest.fixture
def bad_landing(tmp_path: Path, write_csv) -> Path:
    """Hand-made files with one bad row of every kind, each commented with the reason it must get."""
    land = tmp_path / "landing"
    write_csv(
        land / "customers.csv",
        ["customer_id", "email", "phone", "country", "birth_date", "consent_email", "registered_at"],
        [
            ["c1", "  Ann@Example.COM ", "8 (916) 123-45-67", "RU", "1990-05-01", "yes", "2023-01-01"],
            ["c2", "", "+7 701 123 45 67", "KZ", "", "0", "2023-01-02T10:00:00Z"],
            ["", "x@y", "", "", "", "", ""],  # missing_key:customer_id
            ["c3", "", "", "", "1990-02-30", "", ""],  # unparseable_date:birth_date
            ["c4", "", "", "", "", "perhaps", ""],  # unparseable_boolean:consent_email
            ["c1", "dup@x", "", "", "", "", ""],  # duplicate_key
        ],
    )
    write_csv(land / "products.csv", ["product_id", "category"], [["p1", "Tea"], ["p1", "Again"]])  # dup
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount", "status"],
        [
            ["o1", "c1", "2024-01-05 10:00:00", "100.50", "completed"],
            ["o2", "c1", "2024-01-06", "50", ""],  # empty status = completed
            ["o3", "c2", "2024-01-06", "50", "Cancelled"],
            ["", "c1", "2024-01-06", "1", ""],  # missing_key:order_id
            ["o4", "", "2024-01-06", "1", ""],  # missing_key:customer_id
            ["o5", "c1", "06/01/2024", "1", ""],  # unparseable_date:ordered_at
            ["o6", "c1", "", "1", ""],  # unparseable_date:ordered_at (required)
            ["o7", "c1", "2024-01-06", "1,5", ""],  # unparseable_number:total_amount
            ["o8", "c1", "2024-01-06", "-1", ""],  # negative_amount:total_amount
            ["o9", "c1", "2024-01-06", "1", "lost"],  # unknown_status
            ["o10", "ghost", "2024-01-06", "1", ""],  # orphan:customer_id
            ["o1", "c1", "2024-01-07", "3", ""],  # duplicate_key
            ["o11", "c3", "2024-01-06", "1", ""],  # orphan: c3 itself was quarantined
        ],
    )
    write_csv(
        land / "order_lines.csv",
        ["order_id", "product_id", "quantity", "price"],
        [
            ["o1", "p1", "2", "10"],
            ["o1", "p1", "", "5"],  # empty quantity = 1
            ["o404", "p1", "1", "1"],  # orphan:order_id
            ["o1", "p404", "1", "1"],  # orphan:product_id
            ["o1", "p1", "1.5", "1"],  # unparseable_number:quantity
            ["o1", "p1", "1", "-2"],  # negative_amount:price
        ],
    )
    write_csv(
        land / "bonus_transactions.csv",
        ["customer_id", "occurred_at", "points"],
        [["c1", "2024-01-05", "-10"], ["c1", "2024-01-05", "ten"]],  # negative points are fine; "ten" is not
    )
    return land


EXPECTED_REASONS = {
    "customers": {
        "missing_key:customer_id": 1,
        "unparseable_date:birth_date": 1,
        "unparseable_boolean:consent_email": 1,
        "duplicate_key": 1,
    },
    "products": {"duplicate_key": 1},
    "orders": {
        "missing_key:order_id": 1,
        "missing_key:customer_id": 1,
        "unparseable_date:ordered_at": 2,
        "unparseable_number:total_amount": 1,
        "negative_amount:total_amount": 1,
        "unknown_status": 1,
        "orphan:customer_id": 2,
        "duplicate_key": 1,
    },
    "order_lines": {
        "orphan:order_id": 1,
        "orphan:product_id": 1,
        "unparseable_number:quantity": 1,
        "negative_amount:price": 1,
    },
    "events": {},
    "messages": {},
    "bonus_transactions": {"unparseable_number:points": 1},
}


def test_every_bad_row_is_quarantined_with_its_reason(bad_landing: Path, tmp_path: Path) -> None:
    results = {r.table: r for r in load_all(tmp_path / "db.duckdb", bad_landing)}
    assert {t: r.reasons for t, r in results.items()} == EXPECTED_REASONS
    with duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True) as con:
        quarantined = con.execute(
            "SELECT row_number, reason, raw_row->>'order_id' FROM raw.quarantine WHERE table_name = 'orders' "
            "ORDER BY row_number"
        ).fetchall()
        # Row numbers are 1-based data rows of the file; the raw row is kept as read (empty = null).
        assert quarantined[0] == (4, "missing_key:order_id", None)
        assert (12, "duplicate_key", "o1") in quarantined
        assert con.execute("SELECT DISTINCT source_file FROM raw.quarantine WHERE table_name='orders'").fetchall() == [
            ("orders.csv",)
        ]
        orders = dict(con.execute("SELECT order_id, status FROM raw.orders").fetchall())
        assert orders == {"o1": "completed", "o2": "completed", "o3": "cancelled"}
        # The first o1 wins over its later duplicate.
        assert con.execute("SELECT total_amount FROM raw.orders WHERE order_id='o1'").fetchone()[0] == 100.5
        lines = con.execute("SELECT quantity, price FROM raw.order_lines ORDER BY price").fetchall()
        assert [(q, float(p)) for q, p in lines] == [(1, 5.0), (2, 10.0)]
        customers = con.execute(
            "SELECT customer_id, email, phone_e164, phone_region, consent_email, registered_at::VARCHAR "
            "FROM raw.customers ORDER BY 1"
        ).fetchall()
        assert customers == [
            ("c1", "ann@example.com", "+79161234567", "RU", True, "2023-01-01 00:00:00"),
            ("c2", None, "+77011234567", "KZ", False, "2023-01-02 10:00:00"),
        ]
    for name, result in results.items():
        assert result.rows_loaded + result.rows_quarantined == result.rows_read, name


def test_generated_data_balances_for_every_table(demo_landing: Path, tmp_path: Path) -> None:
    """Rows counted straight from the files = loaded + quarantined; planted bad rows get their planned reason."""
    import json

    results = {r.table: r for r in load_all(tmp_path / "db.duckdb", demo_landing)}
    planted = json.loads((demo_landing / "_demo_summary.json").read_text())["bad_rows"]
    for spec in TABLES:
        files = sorted((demo_landing / spec.name).glob("*.csv"))
        in_files = sum(pacsv.read_csv(f).num_rows for f in files)
        r = results[spec.name]
        assert in_files > 0, spec.name
        assert r.rows_read == in_files, spec.name
        assert r.rows_loaded + r.rows_quarantined == in_files, spec.name
        assert r.reasons == planted[spec.name], spec.name


def test_parquet_folder_loads_like_csv(tmp_path: Path, write_csv) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    land = tmp_path / "landing"
    (land / "orders").mkdir(parents=True)
    write_csv(land / "customers.csv", ["customer_id"], [["a"], ["b"]])
    pq.write_table(
        pa.table(
            {
                "order_id": ["1", "2"],
                "customer_id": ["a", "zz"],
                "ordered_at": ["2024-01-01", "2024-01-02"],
                "total_amount": [1.5, 2.0],
            }
        ),
        land / "orders" / "part-1.parquet",
    )
    write_csv(
        land / "orders" / "part-2.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [["3", "b", "2024-01-03", "7"]],
    )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        load_table(con, TABLES_BY_NAME["customers"], land)
        result = load_table(con, TABLES_BY_NAME["orders"], land)
        assert (result.rows_read, result.rows_loaded, result.reasons) == (3, 2, {"orphan:customer_id": 1})
        assert result.files == ["orders/part-1.parquet", "orders/part-2.csv"]
        row = con.execute("SELECT source_file, row_number FROM raw.quarantine WHERE table_name='orders'").fetchone()
        assert row == ("orders/part-1.parquet", 2)


def test_missing_required_column_names_file_and_column(tmp_path: Path, write_csv) -> None:
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["a"]])
    write_csv(land / "orders.csv", ["order_id", "customer_id", "total_amount"], [["1", "a", "3"]])
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        load_table(con, TABLES_BY_NAME["customers"], land)
        with pytest.raises(LoadError, match=r"orders\.csv: missing required column 'ordered_at'"):
            load_table(con, TABLES_BY_NAME["orders"], land)


def test_missing_required_table_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con, pytest.raises(LoadError, match="no customers data"):
        load_table(con, TABLES_BY_NAME["customers"], tmp_path / "landing")


def test_custom_columns_are_typed_by_inference(tmp_path: Path, write_csv) -> None:
    land = tmp_path / "landing"
    write_csv(
        land / "customers.csv",
        ["customer_id", "custom_n", "custom_x", "custom_d", "custom_b", "custom_t", "unknown_col"],
        [["a", "1", "1.5", "2024-01-01", "yes", "hello", "z"], ["b", "", "2", "", "no", "7", "z"]],
    )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        result = load_table(con, TABLES_BY_NAME["customers"], land)
        assert result.custom_columns == {
            "custom_b": "BOOLEAN",
            "custom_d": "DATE",
            "custom_n": "BIGINT",
            "custom_t": "VARCHAR",
            "custom_x": "DOUBLE",
        }
        assert result.ignored_columns == ["customers.csv:unknown_col"]
        row = con.execute("SELECT custom_n, custom_x, custom_b, custom_t FROM raw.customers WHERE customer_id='b'")
        assert row.fetchone() == (None, 2.0, False, "7")


def test_unchanged_files_are_not_reloaded_and_a_changed_parent_reloads_its_children(tmp_path: Path, write_csv) -> None:
    """A backfill of many days loads each table once: a load is kept while its files, the loading code
    and its parents' loads are unchanged; a change anywhere in that chain reloads."""
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["a"], ["b"]])
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [["1", "a", "2024-01-01", "5"], ["2", "c", "2024-01-02", "6"]],  # c is not a customer yet
    )
    customers, orders = TABLES_BY_NAME["customers"], TABLES_BY_NAME["orders"]
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:

        def load() -> tuple[LoadResult, LoadResult]:
            return load_table_if_changed(con, customers, land), load_table_if_changed(con, orders, land)

        c1, o1 = load()
        assert (c1.reused, o1.reused) == (False, False)
        assert (o1.rows_loaded, o1.reasons) == (1, {"orphan:customer_id": 1})
        # Same files: both kept, with the counts of the load they keep.
        con.execute("INSERT INTO raw.orders (order_id, customer_id) VALUES ('marker', 'a')")  # seen if kept
        c2, o2 = load()
        assert (c2.reused, o2.reused) == (True, True)
        assert (o2.rows_loaded, o2.reasons) == (1, {"orphan:customer_id": 1})
        assert con.execute("SELECT count(*) FROM raw.orders WHERE order_id = 'marker'").fetchone()[0] == 1
        # A new customer c: customers reload, and so do orders (c's order is no longer an orphan).
        write_csv(land / "customers.csv", ["customer_id"], [["a"], ["b"], ["c"]])
        c3, o3 = load()
        assert (c3.reused, o3.reused) == (False, False)
        assert (o3.rows_loaded, o3.reasons) == (2, {})
        assert con.execute("SELECT count(*) FROM raw.orders WHERE order_id = 'marker'").fetchone()[0] == 0
        # A dropped raw table is loaded again even though nothing changed.
        con.execute("DROP TABLE raw.orders")
        assert load()[1].reused is False
        assert con.execute("SELECT count(*) FROM raw.orders").fetchone()[0] == 2
