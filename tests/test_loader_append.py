"""Append loads: a day's new files are appended only when that equals a full load of the folder.

One DuckDB file is loaded step by step as files land, the way nights do, through
`load_table_if_changed`; after every step each raw table, the quarantine and the load results are
compared with a fresh full load (`load_table`) of the same folder into a new file, and the path
each table took (kept, appended, reloaded in full and why) is asserted.
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

from acrm_pipelines.ingest import loader
from acrm_pipelines.ingest.contract import TABLES, TABLES_BY_NAME
from acrm_pipelines.ingest.incremental import load_table_if_changed
from acrm_pipelines.ingest.loader import LoadResult, load_table

CUSTOMERS = ["customer_id", "email", "birth_date", "custom_score"]
ORDERS = ["order_id", "customer_id", "ordered_at", "total_amount"]
LINES = ["order_id", "product_id", "quantity", "price"]
EVENTS = ["customer_id", "occurred_at", "event_type"]
# Fields of a result that say how it was loaded, not what is loaded: the rest must equal a full load's.
HOW = {"reused", "appended_files", "full_reason"}


def land(root: Path, rel: str, header: list[str], rows: list[list[str]]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def incremental(con: duckdb.DuckDBPyConnection, landing: Path) -> dict[str, LoadResult]:
    return {spec.name: load_table_if_changed(con, spec, landing) for spec in TABLES}


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """Every raw table's columns and sorted rows, and the quarantine without its load time."""
    out: dict[str, list] = {}
    for spec in TABLES:
        cols = [r[0] for r in con.execute(f"DESCRIBE raw.{spec.name}").fetchall()]
        out[spec.name] = [cols, con.execute(f"SELECT * FROM raw.{spec.name} ORDER BY ALL").fetchall()]
    out["quarantine"] = con.execute(
        "SELECT table_name, source_file, row_number, reason, raw_row FROM raw.quarantine ORDER BY ALL"
    ).fetchall()
    return out


def full_load(landing: Path, db: Path) -> tuple[dict[str, LoadResult], dict[str, list]]:
    db.unlink(missing_ok=True)
    with duckdb.connect(str(db)) as con:
        results = {spec.name: load_table(con, spec, landing) for spec in TABLES}
        return results, snapshot(con)


def what(result: LoadResult) -> dict:
    return {k: v for k, v in vars(result).items() if k not in HOW}


def step(con: duckdb.DuckDBPyConnection, landing: Path, tmp: Path) -> dict[str, LoadResult]:
    """Load what landed; assert it equals a fresh full load of the folder; return the results."""
    results = incremental(con, landing)
    expected_results, expected = full_load(landing, tmp / "fresh.duckdb")
    assert snapshot(con) == expected
    for name, result in results.items():
        assert what(result) == what(expected_results[name]), name
    return results


def path_of(result: LoadResult) -> str:
    if result.reused:
        return "kept"
    return "append" if result.appended_files else f"full: {result.full_reason}"


@pytest.fixture
def night1(tmp_path: Path) -> Path:
    """The first night's files, with rows of every verdict an append must carry on correctly."""
    landing = tmp_path / "landing"
    land(
        landing,
        "customers/part-001.csv",
        CUSTOMERS,
        [["c1", "a@x.ru", "1990-01-01", "5"], ["c2", "b@x.ru", "", "7"], ["c3", "", "1990-02-30", ""]],
    )
    land(
        landing,
        "orders/part-001.csv",
        ORDERS,
        [
            ["o1", "c1", "2024-01-01", "10"],
            ["o2", "ghost", "2024-01-02", "20"],  # orphan: ghost arrives on night 3
            ["o3", "c2", "2024-01-03", "30"],
            ["o7", "c3", "2024-01-03", "30"],  # orphan: c3 is quarantined
        ],
    )
    land(landing, "order_lines/part-001.csv", LINES, [["o1", "p1", "1", "10"], ["o9", "p1", "1", "5"]])
    land(landing, "events/part-001.csv", EVENTS, [["c1", "2024-01-01", "view"], ["ghost2", "2024-01-01", "view"]])
    return landing


def test_nights_append_and_equal_a_full_load(night1: Path, tmp_path: Path) -> None:
    landing = night1
    with duckdb.connect(str(tmp_path / "acrm.duckdb")) as con:
        first = step(con, landing, tmp_path)
        assert {n: path_of(r) for n, r in first.items()} == dict.fromkeys(first, "full: first load")

        # Night 2: new customers, orders of new and old customers, repeats of a loaded key and of an
        # orphan's key (both duplicates: the first row wins), bad rows, the custom column still a number.
        land(
            landing,
            "customers/part-002.csv",
            CUSTOMERS,
            [["c4", "d@x.ru", "", "9"], ["c1", "again@x.ru", "", "1"], ["c5", "", "31.12.1990", "2"]],
        )
        land(
            landing,
            "orders/part-002.csv",
            ORDERS,
            [
                ["o4", "c4", "2024-01-04", "40"],
                ["o5", "c1", "2024-01-05", "50"],
                ["o1", "c1", "2024-01-05", "11"],  # duplicate of a loaded order
                ["o2", "c1", "2024-01-05", "21"],  # duplicate of an orphan order
                ["o6", "c1", "2024-01-05", "-1"],  # negative amount
                ["o8", "c5", "2024-01-05", "5"],  # orphan: c5 was quarantined tonight
                ["o4", "c4", "2024-01-06", "41"],  # duplicate within the new file
            ],
        )
        land(landing, "order_lines/part-002.csv", LINES, [["o4", "p1", "2", "40"], ["o5", "p2", "1", "50"]])
        land(landing, "events/part-002.csv", EVENTS, [["c4", "2024-01-04", "view"]])
        night2 = step(con, landing, tmp_path)
        assert {n: path_of(r) for n, r in night2.items()} == {
            "customers": "append",
            "products": "kept",
            "orders": "append",
            "order_lines": "append",
            "events": "append",
            "messages": "kept",  # no files, a parent that only grew
            "bonus_transactions": "kept",
        }
        assert night2["orders"].appended_files == ["orders/part-002.csv"]
        assert night2["orders"].reasons == {
            "duplicate_key": 3,
            "negative_amount:total_amount": 1,
            "orphan:customer_id": 3,
        }

        # Night 3: the customer an old orphan order was missing arrives: orders can't append (o2
        # would now load), and order lines follow their reloaded parent. events' orphan is still out.
        land(landing, "customers/part-003.csv", CUSTOMERS, [["ghost", "", "", "3"]])
        night3 = step(con, landing, tmp_path)
        paths = {n: path_of(r) for n, r in night3.items()}
        assert paths["customers"] == "append"
        arrived = "1 customers row(s) arrived that quarantined orders rows were missing (customer_id)"
        assert paths["orders"] == f"full: {arrived}"
        assert paths["order_lines"] == "full: a parent table was reloaded in full"
        assert paths["events"] == "kept"

        # Night 4: products appear, so order lines' product_id is checked from now on: a full reload.
        land(landing, "products/part-001.csv", ["product_id"], [["p1"]])
        night4 = step(con, landing, tmp_path)
        assert path_of(night4["products"]) == "append"
        assert path_of(night4["order_lines"]) == "full: the parent tables its rows are checked against changed"
        assert night4["order_lines"].reasons == {"orphan:order_id": 1, "orphan:product_id": 1}

        # A late file that sorts before a loaded one: its rows come first in a full load.
        land(landing, "orders/part-000.csv", ORDERS, [["o5", "c2", "2024-01-01", "1"]])
        late = step(con, landing, tmp_path)
        early = "orders/part-000.csv sorts before orders/part-002.csv, which is loaded"
        assert path_of(late["orders"]) == f"full: {early}"

        # A loaded file rewritten (a row added): everything reading it reloads.
        land(
            landing,
            "customers/part-002.csv",
            CUSTOMERS,
            [
                ["c4", "d@x.ru", "", "9"],
                ["c1", "again@x.ru", "", "1"],
                ["c5", "", "31.12.1990", "2"],
                ["c6", "", "", ""],
            ],
        )
        changed = step(con, landing, tmp_path)
        assert path_of(changed["customers"]) == "full: customers/part-002.csv changed since it was loaded"
        assert path_of(changed["events"]) == "full: a parent table was reloaded in full"

        # A custom value that is no longer a number, then a new custom column: both change the table's shape.
        land(landing, "customers/part-004.csv", CUSTOMERS, [["c7", "", "", "high"]])
        retyped = step(con, landing, tmp_path)
        retype = "custom column custom_score no longer parses as BIGINT with the new files"
        assert path_of(retyped["customers"]) == f"full: {retype}"
        assert retyped["customers"].custom_columns == {"custom_score": "VARCHAR"}
        land(landing, "customers/part-005.csv", [*CUSTOMERS, "custom_tier"], [["c8", "", "", "x", "gold"]])
        widened = step(con, landing, tmp_path)
        assert path_of(widened["customers"]) == "full: the new files add custom column custom_tier"

        # A night with nothing new keeps everything.
        quiet = step(con, landing, tmp_path)
        assert {path_of(r) for r in quiet.values()} == {"kept"}


def test_an_append_that_fails_leaves_the_table_and_its_record_as_they_were(
    night1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = night1
    with duckdb.connect(str(tmp_path / "acrm.duckdb")) as con:
        incremental(con, landing)
        before = snapshot(con)
        loads = con.execute("SELECT * FROM raw.loads ORDER BY table_name").fetchall()
        orphans = con.execute("SELECT * FROM raw.load_orphans ORDER BY ALL").fetchall()
        land(
            landing,
            "orders/part-002.csv",
            ORDERS,
            [["o4", "c1", "2024-01-04", "40"], ["o5", "nobody", "2024-01-04", "1"]],
        )

        def fail(*args, **kwargs):  # after the new rows went into raw.orders, raw.quarantine and load_orphans
            raise RuntimeError("disk full")

        monkeypatch.setattr(loader, "_merged", fail)
        with pytest.raises(RuntimeError, match="disk full"):
            load_table_if_changed(con, TABLES_BY_NAME["orders"], landing)
        assert snapshot(con) == before
        assert con.execute("SELECT * FROM raw.loads ORDER BY table_name").fetchall() == loads
        assert con.execute("SELECT * FROM raw.load_orphans ORDER BY ALL").fetchall() == orphans

        monkeypatch.undo()
        result = step(con, landing, tmp_path)["orders"]
        assert (path_of(result), result.rows_loaded, result.reasons) == ("append", 3, {"orphan:customer_id": 3})


def test_a_load_from_before_appends_existed_reloads_once(night1: Path, tmp_path: Path) -> None:
    """raw.loads rows written by an older version (no state) are reloaded in full, then append."""
    landing = night1
    with duckdb.connect(str(tmp_path / "acrm.duckdb")) as con:
        incremental(con, landing)
        con.execute("UPDATE raw.loads SET state = NULL, base = NULL, signature = 'old'")
        again = step(con, landing, tmp_path)
        assert {path_of(r) for r in again.values()} == {"full: first load"}
        land(landing, "orders/part-002.csv", ORDERS, [["o4", "c1", "2024-01-04", "40"]])
        assert path_of(step(con, landing, tmp_path)["orders"]) == "append"
