"""When a night's analytics build may start from the stored rows (analytics/incremental.py), on a DuckDB file
made by hand: only after a recorded build with the same code and attribution windows, with raw orders and
messages only appended to since. The rows themselves are compared with a full build in
tests/test_features_incremental.py and tests/test_analytics_funnel.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from acrm_pipelines.analytics import incremental

WINDOWS = {"attribution_windows": {"spring": 72}, "attribution_default_hours": 168}


@pytest.fixture
def con(tmp_path: Path):
    with duckdb.connect(str(tmp_path / "a.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.loads (table_name VARCHAR, base VARCHAR)")
        con.execute("INSERT INTO raw.loads VALUES ('orders', 'o1'), ('messages', 'm1')")
        con.execute("CREATE TABLE raw.orders AS SELECT range AS n FROM range(5)")
        con.execute("CREATE TABLE raw.messages AS SELECT range AS n FROM range(3)")
        yield con


def test_the_first_build_is_full_and_the_next_starts_from_its_rows(con) -> None:
    first = incremental.plan(con, WINDOWS)
    assert (first.since, first.reason) == (None, "no analytics build is recorded")
    assert first.dbt_vars() == {}
    incremental.forget(con)
    incremental.record(con, first)
    con.execute("INSERT INTO raw.orders SELECT range FROM range(2)")  # the night's rows, appended
    second = incremental.plan(con, WINDOWS)
    assert second.since == {"orders": 5, "messages": 3}  # rows at the recorded build: later rowids are new
    assert second.dbt_vars() == {"analytics_rows": {"orders": 5, "messages": 3}}
    incremental.record(con, second)
    assert incremental.plan(con, WINDOWS).since == {"orders": 7, "messages": 3}


@pytest.mark.parametrize(
    "change, reason",
    [
        ("forget", "the last analytics build did not finish, or built part of them"),
        ("windows", "the attribution windows changed since the last build"),
        ("reload", "raw.messages was reloaded in full since the stored build"),
        ("fewer", "raw.orders was reloaded in full since the stored build"),
        ("code", "the dbt project changed since the last build"),
    ],
)
def test_anything_but_appended_rows_makes_the_next_build_full(con, change: str, reason: str) -> None:
    incremental.forget(con)
    incremental.record(con, incremental.plan(con, WINDOWS))
    windows = WINDOWS
    if change == "forget":  # a build started (and failed, or built part of them)
        incremental.forget(con)
    elif change == "windows":
        windows = {**WINDOWS, "attribution_windows": {"spring": 48}}
    elif change == "reload":
        con.execute("UPDATE raw.loads SET base = 'm2' WHERE table_name = 'messages'")
    elif change == "fewer":
        con.execute("DELETE FROM raw.orders WHERE n = 4")
    else:
        con.execute("UPDATE analytics.builds SET code = 'another'")
    planned = incremental.plan(con, windows)
    assert (planned.since, planned.reason) == (None, reason)
