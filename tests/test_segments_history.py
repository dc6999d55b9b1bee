"""Membership history: read-back of any date, entered/exited, backfills, storage that grows with changes."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest

from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.segments.history import record
from acrm_pipelines.segments.members import members_at, segments_of

SEGMENTS = """\
key: big
rules: {field: total_amount, op: ">=", value: 100}
---
key: ab
from: {union: [big]}
split: {arms: {a: 50, b: 50}, salt: s}
"""
D1, D2, D3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)


def set_features(con: duckdb.DuckDBPyConnection, amounts: dict[str, int]) -> None:
    rows = ", ".join(f"('{c}', {a})" for c, a in amounts.items())
    con.execute(
        f"CREATE OR REPLACE TABLE marts.customer_features AS SELECT * FROM (VALUES {rows}) t(customer_id, total_amount)"
    )


def run(con, segments, day: date, amounts: dict[str, int]):
    set_features(con, amounts)
    result = evaluate(con, segments, day)
    return record(con, result, ["big", "ab"], {"big": "v1", "ab": "v1"})


@pytest.fixture
def setup(tmp_path: Path, make_marts, segment_set):
    con = make_marts(tmp_path / "db.duckdb", "SELECT 'x' AS customer_id, 0 AS total_amount")
    return con, segment_set(tmp_path, SEGMENTS)


def members(con, key: str, day: date) -> set[str]:
    return {c for c, _ in members_at(con, key, day)}


def test_three_days_forward_then_backfill(setup) -> None:
    con, segments = setup
    r1 = run(con, segments, D1, {"c1": 150, "c2": 50, "c3": 100})
    r2 = run(con, segments, D2, {"c1": 150, "c2": 120, "c3": 10, "c4": 500})
    r3 = run(con, segments, D3, {"c1": 90, "c2": 120, "c3": 10, "c4": 500})
    assert (r1["big"].size, r1["big"].entered, r1["big"].exited) == (2, 2, 0)  # c1, c3
    assert (r2["big"].size, r2["big"].entered, r2["big"].exited) == (3, 2, 1)  # +c2 +c4 -c3
    assert (r3["big"].size, r3["big"].entered, r3["big"].exited) == (2, 0, 1)  # -c1
    assert members(con, "big", D1) == {"c1", "c3"}
    assert members(con, "big", D2) == {"c1", "c2", "c4"}
    assert members(con, "big", D3) == {"c2", "c4"}
    assert members(con, "big", date(2024, 6, 1)) == {"c2", "c4"}  # later days read the last evaluation
    assert members(con, "big", date(2023, 12, 31)) == set()
    # Stretches: c1 [D1, D3), c3 [D1, D2), c2 [D2, open), c4 [D2, open).
    stretches = con.execute(
        "SELECT customer_id, valid_from, valid_to FROM segments.membership WHERE segment_key='big' ORDER BY 1"
    ).fetchall()
    assert stretches == [("c1", D1, D3), ("c2", D2, None), ("c3", D1, D2), ("c4", D2, None)]

    # Backfill D2 with other data: D1 and D3 stay as they were; D3's counts now compare with the new D2.
    r2b = run(con, segments, D2, {"c1": 150, "c3": 100, "c5": 100})
    assert (r2b["big"].size, r2b["big"].entered, r2b["big"].exited) == (3, 1, 0)  # c1 c3 c5 vs D1's c1 c3
    assert members(con, "big", D1) == {"c1", "c3"}
    assert members(con, "big", D2) == {"c1", "c3", "c5"}
    assert members(con, "big", D3) == {"c2", "c4"}
    d3 = con.execute(
        "SELECT size, entered, exited FROM segments.evaluations WHERE segment_key='big' AND as_of=?", [D3]
    ).fetchone()
    assert d3 == (2, 2, 3)  # D2 {c1,c3,c5} -> D3 {c2,c4}
    # Merged: c1 is one stretch [D1, D3) again, c3 [D1, D3).
    stretches = con.execute(
        "SELECT customer_id, valid_from, valid_to FROM segments.membership WHERE segment_key='big' ORDER BY 1, 2"
    ).fetchall()
    assert stretches == [("c1", D1, D3), ("c2", D3, None), ("c3", D1, D3), ("c4", D3, None), ("c5", D2, D3)]


def test_storage_grows_with_changes_not_days(setup) -> None:
    con, segments = setup
    amounts = {f"c{i}": 100 + i for i in range(50)}
    for day in range(1, 11):
        run(con, segments, date(2024, 1, day), amounts)
    rows = con.execute("SELECT count(*) FROM segments.membership WHERE segment_key='big'").fetchone()[0]
    assert rows == 50  # ten days of the same 50 members: one open stretch each
    counts = con.execute(
        "SELECT sum(entered), sum(exited) FROM segments.evaluations WHERE segment_key='big'"
    ).fetchone()
    assert counts == (50, 0)
    # Re-running a day changes nothing.
    run(con, segments, date(2024, 1, 5), amounts)
    assert con.execute("SELECT count(*) FROM segments.membership WHERE segment_key='big'").fetchone()[0] == 50


def test_arms_are_recorded_and_segments_of(setup) -> None:
    con, segments = setup
    run(con, segments, D1, {"c1": 150, "c2": 50})
    arms = dict(members_at(con, "ab", D1))
    assert set(arms) == {"c1"} and arms["c1"] in {"a", "b"}
    assert segments_of(con, "c1", D1) == [("ab", arms["c1"]), ("big", None)]
    assert segments_of(con, "c2", D1) == []


def test_nightly_fast_path_equals_general_path(tmp_path: Path, make_marts, segment_set) -> None:
    """Five days of random data, with new and vanishing customers and arm changes, recorded both ways."""
    import random

    rng = random.Random(5)
    days = [
        [(f"c{i:03d}", rng.randrange(0, 200)) for i in range(rng.randrange(0, 20), rng.randrange(150, 200))]
        for _ in range(5)
    ]
    text = SEGMENTS + "---\nkey: by_amount\nfrom: {union: [big]}\nsplit: {by_field: total_amount}\n"
    tables = []
    # The state files are a cache: gone or damaged, the day is rebuilt from the changelog (the general path).
    for damage in ("none", "files removed", "files zeroed"):
        folder = tmp_path / damage.replace(" ", "_")
        folder.mkdir()
        con = make_marts(folder / "db.duckdb", "SELECT 'x' AS customer_id, 0 AS total_amount")
        segments = segment_set(folder, text)
        for n, amounts in enumerate(days):
            set_features(con, dict(amounts))
            result = evaluate(con, segments, date(2024, 2, n + 1))
            for file in (folder / "db.duckdb.segment-state").glob("*.npy") if n else []:
                if damage == "files removed":
                    file.unlink()
                elif damage == "files zeroed":
                    matrix = np.load(file)
                    np.save(file, np.zeros_like(matrix))
            record(con, result, ["big", "ab", "by_amount"], {})
        tables.append(
            (
                con.execute(
                    "SELECT segment_key, customer_id, arm, valid_from, valid_to FROM segments.membership ORDER BY ALL"
                ).fetchall(),
                con.execute(
                    "SELECT segment_key, as_of, size, entered, exited FROM segments.evaluations ORDER BY ALL"
                ).fetchall(),
            )
        )
    assert tables[0] == tables[1] == tables[2]
    assert len(tables[0][0]) > 100
    # And the read-back of each day is that day's evaluation.
    for n, amounts in enumerate(days):
        expected = {c for c, a in amounts if a >= 100}
        assert {
            c
            for s, c, _, f, t in tables[0][0]
            if s == "big" and f <= date(2024, 2, n + 1) and (t is None or t > date(2024, 2, n + 1))
        } == expected


def test_backfill_that_removes_every_change_of_the_next_day(setup) -> None:
    con, segments = setup
    run(con, segments, D1, {"c1": 150})
    run(con, segments, D3, {"c1": 150, "c2": 150})
    # D2 backfilled with D3's membership: D3 no longer changes anything.
    r2 = run(con, segments, D2, {"c1": 150, "c2": 150})
    assert (r2["big"].entered, r2["big"].exited) == (1, 0)
    d3 = con.execute("SELECT entered, exited FROM segments.evaluations WHERE segment_key='big' AND as_of=?", [D3])
    assert d3.fetchone() == (0, 0)
    assert members(con, "big", D3) == {"c1", "c2"}


def test_states_kept_are_the_days_the_next_recording_needs(setup) -> None:
    """Nightly: only the latest day's state. A backfill going forward before recorded days: the latest, the
    day just recorded and its next recorded day (which the backfill's next day diffs against)."""
    con, segments = setup

    def kept() -> set[tuple[str, date]]:
        return set(con.execute("SELECT segment_key, as_of FROM segments.state_days").fetchall())

    day = {n: date(2024, 3, n) for n in range(1, 9)}
    for n in (5, 6, 7):
        run(con, segments, day[n], {"c1": 150, "c2": 50 + 20 * n})
    assert kept() == {("big", day[7]), ("ab", day[7])}
    run(con, segments, day[2], {"c1": 150})
    assert kept() == {(k, d) for k in ("big", "ab") for d in (day[2], day[5], day[7])}
    run(con, segments, day[3], {"c1": 10})
    assert kept() == {(k, d) for k in ("big", "ab") for d in (day[3], day[5], day[7])}
    run(con, segments, day[8], {"c2": 150})
    assert kept() == {("big", day[8]), ("ab", day[8])}
    # Every file on disk is one a kept state points at.
    files = {
        f.name
        for f in (
            Path(
                con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[
                    0
                ]
                + ".segment-state"
            )
        ).glob("*.npy")
    }
    used = {
        f
        for (f,) in con.execute(
            "SELECT file FROM segments.state_days UNION "
            "SELECT arm_file FROM segments.state_days WHERE arm_file IS NOT NULL"
        ).fetchall()
    }
    assert files == used
    assert members(con, "big", day[3]) == set() and members(con, "big", day[5]) == {"c1", "c2"}  # 50 + 20 * 5


def test_the_states_of_the_one_state_version_carry_over(setup, monkeypatch) -> None:
    """A file from the versions that kept one state a segment (`segments.state_files`): its states move to
    `segments.state_days`, and the next night diffs against them without rebuilding the day before."""
    from acrm_pipelines.segments import history

    con, segments = setup
    run(con, segments, D1, {"c1": 150, "c2": 50})
    run(con, segments, D2, {"c1": 150, "c2": 120})
    con.execute("ALTER TABLE segments.state_days RENAME TO state_files")

    def rebuilt(*args, **kwargs):
        raise AssertionError("the day before was rebuilt from the changelog")

    monkeypatch.setattr(history, "_memberships", rebuilt)
    r3 = run(con, segments, D3, {"c2": 120, "c3": 300})
    assert (r3["big"].size, r3["big"].entered, r3["big"].exited) == (2, 1, 1)  # +c3 -c1
    assert members(con, "big", D3) == {"c2", "c3"}
    tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "state_files" not in tables and "state_days" in tables
