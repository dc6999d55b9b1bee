"""The history of a day is recorded whole or not at all: a process killed after any statement of `record`
(or while it writes the state files) leaves the history as it was, and recording the day again gives exactly
what an uninterrupted recording gives.

Before `record` became one transaction, a kill between appending a first day's changes and saving the state
doubled `segments.changes` when the day was recorded again (18,838 rows for 9,419 members).
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import shutil
import signal
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.segments.history import record
from acrm_pipelines.segments.validate import load_segments

# Children start from a server process that has imported the engine once: ~0.1 s a child, not ~2 s.
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["acrm_pipelines.segments.history", "tests.test_segments_history_crash"])

# big, and ab split from it (the segments of tests/test_segments_history.py)
SEGMENTS = """\
key: big
rules: {field: total_amount, op: ">=", value: 100}
---
key: ab
from: {union: [big]}
split: {arms: {a: 50, b: 50}, salt: s}
"""
D1, D2 = date(2024, 1, 1), date(2024, 1, 2)
DAY1 = {f"c{i:03d}": (i * 37) % 250 for i in range(300)}
DAY2 = {**{f"c{i:03d}": (i * 53) % 250 for i in range(300)}, "new1": 500, "new2": 5}
KEYS = ["big", "ab"]
CHANGE = "segment_key, customer_id, as_of, kind, arm"
EVALUATION = "segment_key, as_of, size, entered, exited, arms"


class KillAfter:
    """A connection that SIGKILLs its process after its `n`-th statement has run (counting from 1)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, n: int):
        self._con, self._n, self.count = con, n, 0

    def _step(self) -> None:
        self.count += 1
        if self.count == self._n:
            os.kill(os.getpid(), signal.SIGKILL)

    def execute(self, *args, **kwargs):
        # DuckDB finds the Arrow tables a statement names (`FROM rows`) in the calling frame's variables, and
        # that frame is this method: lend it the real caller's tables.
        caller = inspect.currentframe().f_back.f_locals
        lent = {name: value for name, value in caller.items() if isinstance(value, pa.Table)}
        globals().update(lent)
        try:
            result = self._con.execute(*args, **kwargs)
        finally:
            for name in lent:
                globals().pop(name, None)
        self._step()
        return result

    def begin(self):
        self._con.begin()
        self._step()

    def commit(self):
        self._con.commit()
        self._step()

    def rollback(self):
        self._con.rollback()

    def __getattr__(self, name):
        return getattr(self._con, name)


def _features(con, amounts: dict[str, int]) -> None:
    rows = ", ".join(f"('{c}', {a})" for c, a in amounts.items())
    con.execute(
        f"CREATE OR REPLACE TABLE marts.customer_features AS SELECT * FROM (VALUES {rows}) t(customer_id, total_amount)"
    )


def _record(db: Path, segments, day: date, amounts: dict[str, int], kill_after: int = 0) -> int:
    """Record `day`; returns how many statements that took. With `kill_after`, the connection kills the
    process after that statement."""
    con = duckdb.connect(str(db))
    try:
        _features(con, amounts)
        evaluation = evaluate(con, segments, day)
        counting = KillAfter(con, kill_after)
        record(counting, evaluation, KEYS, dict.fromkeys(KEYS, "v1"))
        return counting.count
    finally:
        con.close()


def _killed(db: str, root: str, day: date, amounts: dict[str, int], n: int) -> None:
    """In a fresh process (a fork of this one could deadlock on DuckDB's and numpy's threads)."""
    segments = load_segments([Path(root) / "segments"], load_catalogue(), root=Path(root))
    _record(Path(db), segments, day, amounts, kill_after=n)


def _record_killed(tmp: Path, db: Path, day: date, amounts: dict[str, int], n: int) -> int | None:
    """The exit code of a process recording `day` with a kill after statement `n`."""
    process = CONTEXT.Process(target=_killed, args=(str(db), str(tmp), day, amounts, n))
    process.start()
    process.join(120)
    return process.exitcode


def _history(db: Path) -> dict:
    """The recorded history (empty before the first recording created its tables)."""
    with duckdb.connect(str(db), read_only=True) as con:
        tables = {
            t
            for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'segments'").fetchall()
        }

        def read(table: str, columns: str) -> list:
            return sorted(con.execute(f"SELECT {columns} FROM segments.{table}").fetchall()) if table in tables else []

        return {
            "changes": read("changes", CHANGE),
            "evaluations": read("evaluations", EVALUATION),
            "index": read("customer_index", "customer_id, idx"),
        }


def _copy(src: Path, dst: Path) -> None:
    shutil.copy(src, dst)
    if Path(f"{src}.segment-state").exists():
        shutil.copytree(f"{src}.segment-state", f"{dst}.segment-state")


@pytest.mark.parametrize("day", ["first", "next"])
def test_killed_after_every_statement_then_recorded_again(tmp_path: Path, day: str, segment_set, make_marts) -> None:
    segments = segment_set(tmp_path, SEGMENTS)
    base = tmp_path / "base.duckdb"
    make_marts(base, "SELECT 'x' AS customer_id, 0 AS total_amount").close()
    if day == "next":
        _record(base, segments, D1, DAY1)
    target, amounts = (D1, DAY1) if day == "first" else (D2, DAY2)

    reference = tmp_path / "reference.duckdb"
    _copy(base, reference)
    statements = _record(reference, segments, target, amounts)
    expected = _history(reference)
    assert statements > 10
    sizes = {k: s for k, d, s, *_ in expected["evaluations"] if d == target}
    assert sizes["big"] == sum(1 for a in amounts.values() if a >= 100)

    for n in range(1, statements + 1):
        db = tmp_path / f"killed-{n}.duckdb"
        _copy(base, db)
        assert _record_killed(tmp_path, db, target, amounts, n) == -signal.SIGKILL, f"statement {n} did not kill"
        after_kill = _history(db)
        # All or nothing: as before the recording, or (killed after the commit) as the whole recording.
        assert after_kill in (_history(base), expected), f"killed after statement {n}: a part was kept"
        _record(db, segments, target, amounts)
        assert _history(db) == expected, f"killed after statement {n}, then recorded again"
