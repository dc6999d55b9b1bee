"""The public membership reader (segments/members.py) on a history written by hand, answers worked out by hand.

Segment `s` (with arms): snapshot on D1 a:x, b:y (one row per member); on D2 c enters with x and a exits;
on D3 b moves to arm x and a comes back with y. Segment `t` (no arms): snapshot on D1 b, c as one 64-bit
word; evaluated again on D2 with no change. D2 and D3 are two days apart, so the day between reads D2.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest

from acrm_pipelines.segments.history import DDL
from acrm_pipelines.segments.members import (
    customer_segments_sql,
    entered_at,
    exited_at,
    members_at,
    segment_members_sql,
    segments_of,
)

D1, D2, D3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 4)
BETWEEN = D2 + timedelta(days=1)


@pytest.fixture
def con():
    con = duckdb.connect()
    for statement in DDL:
        con.execute(statement)
    con.execute("INSERT INTO segments.customer_index VALUES ('a', 0), ('b', 1), ('c', 2), ('d', 3)")
    con.execute(
        "INSERT INTO segments.snapshots VALUES ('s', ?, 'x', 0, NULL), ('s', ?, 'y', 1, NULL), ('t', ?, NULL, 0, ?)",
        [D1, D1, D1, 2**62 + 2**61],  # bits 63 - 1 and 63 - 2: indexes 1 (b) and 2 (c)
    )
    con.execute(
        "INSERT INTO segments.changes VALUES ('s', 'c', ?, 'enter', 'x'), ('s', 'a', ?, 'exit', NULL), "
        "('s', 'b', ?, 'rearm', 'x'), ('s', 'a', ?, 'enter', 'y')",
        [D2, D2, D3, D3],
    )
    for key, day in [("s", D1), ("s", D2), ("s", D3), ("t", D1), ("t", D2)]:
        con.execute("INSERT INTO segments.evaluations VALUES (?, ?, 'v', 0, 0, 0, NULL, now())", [key, day])
    yield con
    con.close()


def test_members_on_a_date(con) -> None:
    assert members_at(con, "s", D1 - timedelta(days=1)) == []
    assert members_at(con, "s", D1) == [("a", "x"), ("b", "y")]
    assert members_at(con, "s", D2) == [("b", "y"), ("c", "x")]
    assert members_at(con, "s", BETWEEN) == [("b", "y"), ("c", "x")]
    assert members_at(con, "s", D3) == [("a", "y"), ("b", "x"), ("c", "x")]
    assert members_at(con, "t", D3) == [("b", None), ("c", None)]
    # The SQL joined into a query of the caller's own, its parameters bound (segment, day, then the caller's).
    sql = f"SELECT customer_id FROM ({segment_members_sql()}) WHERE arm = ? ORDER BY 1"
    assert con.execute(sql, ["s", D3, "x"]).fetchall() == [("b",), ("c",)]


def test_entered_and_exited_on_a_date(con) -> None:
    assert entered_at(con, "s", D1) == [("a", "x"), ("b", "y")] and exited_at(con, "s", D1) == []
    assert entered_at(con, "s", D2) == [("c", "x")] and exited_at(con, "s", D2) == ["a"]
    assert entered_at(con, "s", BETWEEN) == [] and exited_at(con, "s", BETWEEN) == []
    assert entered_at(con, "s", D3) == [("a", "y")] and exited_at(con, "s", D3) == []  # b's rearm is neither
    assert entered_at(con, "t", D1) == [("b", None), ("c", None)] and entered_at(con, "t", D2) == []


def test_segments_of_a_customer_on_a_date(con) -> None:
    assert segments_of(con, "b", D1) == [("s", "y"), ("t", None)]
    assert segments_of(con, "a", D2) == []
    assert segments_of(con, "a", D3) == [("s", "y")]
    assert segments_of(con, "b", D3) == [("s", "x"), ("t", None)]
    assert segments_of(con, "d", D3) == []
    sql = f"SELECT segment_key, arm FROM ({customer_segments_sql()}) ORDER BY 1"
    assert con.execute(sql, ["c", BETWEEN]).fetchall() == [("s", "x"), ("t", None)]
