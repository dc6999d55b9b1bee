"""Hostile landing input: header names, pseudo-column names, duplicate headers, glob characters in file
names, malformed CSV rows and integer overflow. Every expected outcome here is computed by hand."""

from __future__ import annotations

import csv
import json
import traceback
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acrm_pipelines.ingest.contract import TABLES_BY_NAME
from acrm_pipelines.ingest.loader import LoadError, LoadResult, load_table

CUSTOMERS, ORDERS, ORDER_LINES = (TABLES_BY_NAME[n] for n in ("customers", "orders", "order_lines"))
BAD_NAME = "(invalid column name: use custom_ followed by a-z, 0-9 and _)"


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def quarantine(con: duckdb.DuckDBPyConnection, table_name: str) -> list[tuple]:
    return con.execute(
        "SELECT source_file, row_number, reason FROM raw.quarantine WHERE table_name = ? ORDER BY 1, 2", [table_name]
    ).fetchall()


def columns_of(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE raw.{name}").fetchall()]


def test_custom_column_names_outside_the_strict_pattern_are_rejected(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    bad = [
        'custom_x";drop',
        "custom_q'uote",
        "custom_semi;colon",
        "custom_a--b",
        "custom_/*c*/",
        "custom_back\\slash",
        "custom_new\nline",  # csv.writer ends lines with CRLF: DuckDB alone would take this LF and read no rows
        "custom_имя",
        "custom_ﬁ",  # a ligature: not ASCII even though it looks like "fi"
        "custom_" + "a" * 58,  # one too long
        "custom_",
    ]
    good = ["custom_ok", " CUSTOM_Upper ", "custom_" + "b" * 57]
    header = ["customer_id", good[0], *bad[:6], good[1], *bad[6:], good[2]]
    values = {h: f"v{i}" for i, h in enumerate(header)}
    write_csv(
        land / "customers.csv",
        header,
        [
            ["c1", *(values[h] for h in header[1:])],
            ["c2", *("7" if h in good else "x" for h in header[1:])],
            ["", *(values[h] for h in header[1:])],  # missing_key: its raw row keeps every column
        ],
    )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        result = load_table(con, CUSTOMERS, land)
        assert result.rejected_columns == [f"customers.csv:{h} {BAD_NAME}" for h in [*bad[:6], *bad[6:]]]
        assert result.ignored_columns == []
        assert (result.rows_read, result.rows_loaded, result.reasons) == (3, 2, {"missing_key:customer_id": 1})
        long_ok = "custom_" + "b" * 57
        assert result.custom_columns == {long_ok: "VARCHAR", "custom_ok": "VARCHAR", "custom_upper": "VARCHAR"}
        custom = [c for c in columns_of(con, "customers") if c.startswith("custom_")]
        assert custom == [long_ok, "custom_ok", "custom_upper"]  # sorted by name
        assert con.execute("SELECT custom_ok, custom_upper FROM raw.customers ORDER BY customer_id").fetchall() == [
            (values["custom_ok"], values[" CUSTOM_Upper "]),
            ("7", "7"),
        ]
        raw = json.loads(con.execute("SELECT raw_row FROM raw.quarantine WHERE table_name='customers'").fetchone()[0])
        assert raw == {h: (None if h == "customer_id" else values[h]) for h in header}


def test_header_names_of_internal_columns_change_nothing(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    internal = ["rowid", "file_row_number", "_acrm_row", "_file", "_row", "_raw", "_reason", "_pre", "c0"]
    header = ["rowid", "customer_id", *internal[1:], "email"]
    write_csv(
        land / "customers.csv",
        header,
        [
            ["100", "c1", "7", "8", "evil.csv", "42", "{}", "x", "p", "c9", "first@x"],
            ["200", "", "7", "8", "evil.csv", "42", "{}", "x", "p", "c9", "nokey@x"],  # row 2: missing_key
            ["5", "c1", "7", "8", "evil.csv", "42", "{}", "x", "p", "c9", "second@x"],  # row 3: duplicate_key
            ["1", "c2", "7", "8", "evil.csv", "42", "{}", "x", "p", "c9", "c2@x"],
        ],
    )
    # Parquet: a file_row_number column used to clash with DuckDB's option of that name.
    (land / "orders").mkdir()
    pq.write_table(
        pa.table(
            {
                "order_id": ["o1", "o2", "o3"],
                "customer_id": ["c1", "ghost", "c2"],
                "ordered_at": ["2024-01-01", "2024-01-02", "2024-01-03"],
                "total_amount": [1.5, 2.0, 3.0],
                "file_row_number": [9, 9, 9],
                "rowid": [9, 9, 9],
                "_row": ["9", "9", "9"],
            }
        ),
        land / "orders" / "part-1.parquet",
    )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        result = load_table(con, CUSTOMERS, land)
        assert result.ignored_columns == [f"customers.csv:{c}" for c in internal]
        assert quarantine(con, "customers") == [
            ("customers.csv", 2, "missing_key:customer_id"),
            ("customers.csv", 3, "duplicate_key"),
        ]
        assert con.execute("SELECT customer_id, email FROM raw.customers ORDER BY 1").fetchall() == [
            ("c1", "first@x"),  # the first c1 in file order wins, whatever its "rowid" column says
            ("c2", "c2@x"),
        ]
        assert con.execute(
            "SELECT raw_row->>'rowid', raw_row->>'_row' FROM raw.quarantine WHERE row_number = 2"
        ).fetchone() == ("200", "42")
        orders = load_table(con, ORDERS, land)
        assert (orders.rows_read, orders.rows_loaded, orders.reasons) == (3, 2, {"orphan:customer_id": 1})
        assert quarantine(con, "orders") == [("orders/part-1.parquet", 2, "orphan:customer_id")]
        assert columns_of(con, "orders") == [c.name for c in ORDERS.columns]


def test_a_file_with_a_duplicated_header_is_quarantined_whole(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["c1"]])
    cols = ["order_id", "customer_id", "ordered_at", "total_amount"]
    write_csv(land / "orders" / "part-1.csv", cols, [["o1", "c1", "2024-01-01", "1"], ["o2", "c1", "2024-01-02", "2"]])
    write_csv(
        land / "orders" / "part-2.csv",
        [*cols, " Total_Amount"],  # the same name after trim + lower-case
        [["o3", "c1", "2024-01-03", "3", "30"], ["o4", "c1", "2024-01-04", "4", "40"], ["", "", "", "", ""]],
    )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        load_table(con, CUSTOMERS, land)
        result = load_table(con, ORDERS, land)
        assert (result.rows_read, result.rows_loaded) == (5, 2)
        assert result.reasons == {"duplicate_column:total_amount": 3}
        assert quarantine(con, "orders") == [
            ("orders/part-2.csv", n, "duplicate_column:total_amount") for n in (1, 2, 3)
        ]
        assert con.execute("SELECT order_id FROM raw.orders ORDER BY 1").fetchall() == [("o1",), ("o2",)]
        raw = con.execute("SELECT raw_row FROM raw.quarantine WHERE table_name='orders' AND row_number=1").fetchone()
        assert json.loads(raw[0]) == {
            "order_id": "o3",
            "customer_id": "c1",
            "ordered_at": "2024-01-03",
            "total_amount": "3",
            " Total_Amount": "30",
        }


def test_glob_characters_in_file_names_are_read_literally(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["c1"]])
    names = ["a[1].csv", "a1.csv", "b*.csv", "c?.csv", "d{x,y}.csv", "dx.csv", "e'q.csv", "f**.csv"]
    for name in names:
        # One good row and one orphan per file: the orphan's quarantine row shows which file it came from.
        write_csv(
            land / "orders" / name,
            ["order_id", "customer_id", "ordered_at", "total_amount"],
            [[f"ok-{name}", "c1", "2024-01-01", "1"], [f"orphan-{name}", "ghost", "2024-01-01", "1"]],
        )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        load_table(con, CUSTOMERS, land)
        result = load_table(con, ORDERS, land)
        expected_files = ["a1.csv", "a[1].csv", "b*.csv", "c?.csv", "dx.csv", "d{x,y}.csv", "e'q.csv", "f**.csv"]
        assert result.files == [f"orders/{n}" for n in expected_files]
        assert (result.rows_read, result.rows_loaded, result.reasons) == (16, 8, {"orphan:customer_id": 8})
        assert sorted(r[0] for r in con.execute("SELECT order_id FROM raw.orders").fetchall()) == sorted(
            f"ok-{n}" for n in names
        )
        assert con.execute(
            "SELECT source_file, row_number, raw_row->>'order_id' FROM raw.quarantine WHERE table_name = 'orders' "
            "ORDER BY 1"
        ).fetchall() == [(f"orders/{n}", 2, f"orphan-{n}") for n in expected_files]


# Data rows (1-based) of the hostile customers file below and what each must become.
MALFORMED_CSV = (
    b"customer_id,email,phone\n"
    b"c1,ann@example.com,+79161234561\n"  # 1 loaded
    b"c2,bob@example.com,+79161234562,EXTRA\n"  # 2 too many fields
    b'c3,"multi\nline@example.com",+79161234563\n'  # 3 loaded (a quoted newline is one row)
    b"c4,dan@example.com\n"  # 4 too few fields
    b"c5,e\xffve@example.com,+79161234565\n"  # 5 a byte that is not UTF-8
    b"c6,fay@example.com,+79161234566\n"  # 6 loaded
    b'c7,"gus"@example.com,+79161234567\n'  # 7 text after a closing quote
    b",nokey@example.com,+79161234568\n"  # 8 missing_key
    b"\n"  # a blank line is not a row
    b"c9,ida@example.com,+79161234569,EXTRA,MORE\n"  # 9 too many fields
    b"c6,again@example.com,+79161234570\n"  # 10 duplicate_key (the c6 of row 6 wins)
    b"c11,kim@example.com,+79161234571\n"  # 11 loaded
    b'c12,"lee@example.com,+79161234572\n'  # 12 a quote never closed: it runs to the end of the file...
    b"c13,max@example.com,+79161234573\n"  # ...so this line is inside row 12's value
)
PERSONAL = [b"ann@", b"bob@", b"dan@", b"e\xffve", b"gus", b"ida@", b"lee@", b"max@", b"+7916123456", b"EXTRA"]


def test_malformed_csv_rows_are_quarantined_with_their_row_numbers(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    land.mkdir()
    (land / "customers.csv").write_bytes(MALFORMED_CSV)
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        result = load_table(con, CUSTOMERS, land)
        assert quarantine(con, "customers") == [
            ("customers.csv", 2, "malformed_row:too_many_columns"),
            ("customers.csv", 4, "malformed_row:too_few_columns"),
            ("customers.csv", 5, "malformed_row:invalid_unicode"),
            ("customers.csv", 7, "malformed_row:bad_quote"),
            ("customers.csv", 8, "missing_key:customer_id"),
            ("customers.csv", 9, "malformed_row:too_many_columns"),
            ("customers.csv", 10, "duplicate_key"),
            ("customers.csv", 12, "malformed_row:bad_quote"),
        ]
        assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (12, 4, 8)
        assert con.execute("SELECT customer_id, email, phone_e164 FROM raw.customers ORDER BY 1").fetchall() == [
            ("c1", "ann@example.com", "+79161234561"),
            ("c11", "kim@example.com", "+79161234571"),
            ("c3", "multi\nline@example.com", "+79161234563"),
            ("c6", "fay@example.com", "+79161234566"),
        ]
        # A row that could not be split into columns has no raw row; a parsed one keeps it.
        raws = dict(con.execute("SELECT row_number, raw_row->>'email' FROM raw.quarantine").fetchall())
        assert raws == {
            2: None,
            4: None,
            5: None,
            7: None,
            8: "nokey@example.com",
            9: None,
            10: "again@example.com",
            12: None,
        }
        # The same rows with CRLF line ends, blank lines above the header and a second file in front.
        (land / "customers.csv").unlink()
        write_csv(land / "customers" / "a.csv", ["customer_id"], [["a1"], ["a2"]])
        (land / "customers" / "b.csv").write_bytes(b"\r\n\r\n" + MALFORMED_CSV.replace(b"\n", b"\r\n"))
        again = load_table(con, CUSTOMERS, land)
        assert (again.rows_read, again.rows_loaded) == (14, 6)
        assert [(f, n) for f, n, _ in quarantine(con, "customers")] == [
            ("customers/b.csv", n) for n in (2, 4, 5, 7, 8, 9, 10, 12)
        ]


def test_a_blank_line_in_a_one_column_file_is_an_empty_row(tmp_path: Path) -> None:
    """DuckDB reads a blank line of a one-column file as a row with an empty value (as the loader always did):
    it is numbered as a row, and the numbers around a malformed row stay right."""
    land = tmp_path / "landing"
    land.mkdir()
    (land / "products.csv").write_bytes(b"product_id\r\np1\r\n\r\np2\r\np3,x\r\np4\r\np2\r\n")
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        result = load_table(con, TABLES_BY_NAME["products"], land)
        assert (result.rows_read, result.rows_loaded) == (6, 3)
        assert quarantine(con, "products") == [
            ("products.csv", 2, "missing_key:product_id"),
            ("products.csv", 4, "malformed_row:too_many_columns"),
            ("products.csv", 6, "duplicate_key"),
        ]


def _assert_clean(err: LoadError, path: str) -> None:
    """The message names the file and carries no value from it, not even in a chained exception."""
    text = "".join(traceback.format_exception(err)).encode()
    assert path.encode() in str(err).encode()
    for value in [*PERSONAL, b"secret", b"\\xFF", b"xff@mail"]:
        assert value not in text, value
    assert err.__cause__ is None and err.__context__ is None


def test_load_errors_name_the_file_and_never_carry_row_content(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    land.mkdir()
    (land / "customers.csv").write_bytes(MALFORMED_CSV)
    # orders: ragged, bad bytes, personal data, and no ordered_at column: the file can't be used at all.
    (land / "orders.csv").write_bytes(
        b"order_id,customer_id,total_amount,email\n1,c1,3,ann@example.com\n2,c1,4,bob@example.com,EXTRA\n"
        b"3,c1,5,e\xffve@example.com\n"
    )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        load_table(con, CUSTOMERS, land)
        with pytest.raises(LoadError, match=r"orders\.csv: missing required column 'ordered_at'") as missing:
            load_table(con, ORDERS, land)
        _assert_clean(missing.value, "orders.csv")
        # Mixed line ends: DuckDB can't split the rows; the file fails in our words.
        (land / "orders.csv").write_bytes(
            b"order_id,customer_id,ordered_at,total_amount\r\n1,ann@example.com,2024-01-01,3\n"
            b"2,bob@example.com,2024-01-01,4\r\n"
        )
        with pytest.raises(LoadError, match=r"orders\.csv: cannot read the orders file") as mixed:
            load_table(con, ORDERS, land)
        _assert_clean(mixed.value, "orders.csv")
        # A Parquet text value that is not UTF-8: DuckDB's own message would quote it.
        (land / "orders.csv").unlink()
        (land / "orders").mkdir()
        emails = pa.array([b"ok@mail.ru", b"secret\xff@mail.ru"], pa.binary()).view(pa.string())
        pq.write_table(
            pa.table(
                {
                    "order_id": ["1", "2"],
                    "customer_id": ["c1", "c1"],
                    "ordered_at": ["2024-01-01", "2024-01-02"],
                    "total_amount": ["1", "2"],
                    "email": emails,
                }
            ),
            land / "orders" / "part-1.parquet",
        )
        with pytest.raises(LoadError, match=r"orders/part-1\.parquet: cannot read .*UTF-8 in column 'email'") as broken:
            load_table(con, ORDERS, land)
        _assert_clean(broken.value, "part-1.parquet")
        # Not a Parquet file at all.
        (land / "orders" / "part-1.parquet").write_bytes(b"ann@example.com,+79161234561\n")
        with pytest.raises(LoadError, match=r"orders/part-1\.parquet: not a readable Parquet file") as garbage:
            load_table(con, ORDERS, land)
        _assert_clean(garbage.value, "part-1.parquet")


def test_numbers_too_big_for_their_type_quarantine_the_row(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    huge = "99999999999999999999"  # > 2^63
    write_csv(land / "customers.csv", ["customer_id", "custom_n"], [["c1", "1"], ["c2", huge]])
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [["o1", "c1", "2024-01-01", "1"], ["o2", "c1", "2024-01-01", huge]],  # row 2 > DECIMAL(18,2)
    )
    write_csv(
        land / "order_lines.csv",
        ["order_id", "product_id", "quantity", "price"],
        [
            ["o1", "p1", "3", "1"],
            ["o1", "p1", huge, "1"],  # row 2
            ["o1", "p1", "-" + huge, "1"],  # row 3
            ["o1", "p1", "9223372036854775807", "1"],  # the largest BIGINT still loads
        ],
    )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        customers = load_table(con, CUSTOMERS, land)
        assert (customers.rows_loaded, customers.custom_columns) == (2, {"custom_n": "DOUBLE"})
        assert con.execute("SELECT custom_n FROM raw.customers ORDER BY customer_id").fetchall() == [(1.0,), (1e20,)]
        orders = load_table(con, ORDERS, land)
        assert (orders.rows_loaded, orders.reasons) == (1, {"unparseable_number:total_amount": 1})
        lines: LoadResult = load_table(con, ORDER_LINES, land)
        assert (lines.rows_loaded, lines.reasons) == (2, {"unparseable_number:quantity": 2})
        assert quarantine(con, "order_lines") == [
            ("order_lines.csv", 2, "unparseable_number:quantity"),
            ("order_lines.csv", 3, "unparseable_number:quantity"),
        ]
        assert con.execute("SELECT quantity FROM raw.order_lines ORDER BY quantity").fetchall() == [
            (3,),
            (9223372036854775807,),
        ]


def test_an_empty_part_file_is_skipped_and_named(tmp_path: Path) -> None:
    """A 0-byte part (an exporter's empty shard) in a table's folder: the other parts load, the metadata
    names the skipped file; a required table whose only file is empty fails naming that file."""
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["c1"], ["c2"]])
    cols = ["order_id", "customer_id", "ordered_at", "total_amount"]
    write_csv(land / "orders" / "part-1.csv", cols, [["o1", "c1", "2024-01-01", "1"], ["", "c1", "2024-01-02", "2"]])
    (land / "orders" / "part-2.csv").write_bytes(b"")
    (land / "orders" / "part-3.parquet").write_bytes(b"")
    pq.write_table(
        pa.table(
            {
                c: [
                    "o4"
                    if c == "order_id"
                    else "c2"
                    if c == "customer_id"
                    else "2024-01-04"
                    if c == "ordered_at"
                    else "4"
                ]
                for c in cols
            }
        ),
        land / "orders" / "part-4.parquet",
    )
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        load_table(con, CUSTOMERS, land)
        result = load_table(con, ORDERS, land)
        assert result.skipped_files == ["orders/part-2.csv (empty)", "orders/part-3.parquet (empty)"]
        assert result.files == ["orders/part-1.csv", "orders/part-4.parquet"]
        assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 2, 1)
        assert quarantine(con, "orders") == [("orders/part-1.csv", 2, "missing_key:order_id")]
        assert con.execute("SELECT order_id FROM raw.orders ORDER BY 1").fetchall() == [("o1",), ("o4",)]
    (land / "customers.csv").write_bytes(b"")
    with duckdb.connect(str(tmp_path / "db2.duckdb")) as con, pytest.raises(LoadError) as err:
        load_table(con, CUSTOMERS, land)
    assert str(land / "customers.csv") in str(err.value) and "empty" in str(err.value)
