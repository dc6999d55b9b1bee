"""History's first day is a snapshot in O(members) bytes, and every date reads back what was recorded for it.

Before snapshots, the first evaluated day of a segment wrote one `segments.changes` row per member (3.1
billion rows at 10M customers × 1,000 segments). Now it writes no change rows; and, recorded in any order
with re-runs, every (segment, day) reads the membership recorded last for the latest evaluated date on or
before that day, through every reader.
"""

from __future__ import annotations

import random
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from acrm_pipelines.segments import snapshots
from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.segments.history import record
from acrm_pipelines.segments.members import members_at, members_sql, segments_of

SEGMENTS = """\
key: half
rules: {field: total_amount, op: ">=", value: 500}
---
key: most
rules: {field: total_amount, op: ">=", value: 100}
---
key: few
rules: {field: total_amount, op: ">=", value: 990}
---
key: nobody
rules: {field: total_amount, op: ">", value: 5000}
---
key: ab
from: {union: [most]}
split: {arms: {a: 50, b: 50}, salt: s}
"""
KEYS = ["half", "most", "few", "nobody", "ab"]
D1 = date(2024, 1, 1)


def _features(con: duckdb.DuckDBPyConnection, amounts: dict[str, int]) -> None:
    rows = pa.table({"customer_id": list(amounts), "total_amount": list(amounts.values())})  # noqa: F841
    con.execute("CREATE OR REPLACE TABLE marts.customer_features AS SELECT * FROM rows")


def _record(con, segments, day: date, amounts: dict[str, int], keys=KEYS):
    _features(con, amounts)
    evaluation = evaluate(con, segments, day)
    record(con, evaluation, keys, dict.fromkeys(keys, "v1"))
    return evaluation


def _count(con, sql: str, params=()) -> int:
    return con.execute(sql, list(params)).fetchall()[0][0]


def _bytes(path: Path) -> int:
    wal = Path(f"{path}.wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_first_day_writes_no_change_rows_and_o_members_bytes(tmp_path: Path, make_marts, segment_set) -> None:
    n = 400_000
    rng = np.random.default_rng(11)
    ids = [f"C{i:07d}" for i in range(n)]
    amounts = dict(zip(ids, rng.integers(0, 1000, n).tolist(), strict=True))
    # The members, computed from the amounts alone.
    expected = {
        "half": sum(a >= 500 for a in amounts.values()),
        "most": sum(a >= 100 for a in amounts.values()),
        "few": sum(a >= 990 for a in amounts.values()),
        "nobody": 0,
    }
    expected["ab"] = expected["most"]
    members = sum(expected.values())
    db = tmp_path / "db.duckdb"
    con = make_marts(db, "SELECT 'x' AS customer_id, 0 AS total_amount")
    segments = segment_set(tmp_path, SEGMENTS)
    # The features and the customer index first (a day of a segment nobody is in), so that what the first
    # day adds is history.
    _record(con, segments, D1, amounts, keys=["nobody"])
    con.execute("CHECKPOINT")
    before = _bytes(db)

    record(con, evaluate(con, segments, D1), KEYS, dict.fromkeys(KEYS, "v1"))
    con.execute("CHECKPOINT")
    grown = _bytes(db) - before

    assert _count(con, "SELECT count(*) FROM segments.changes") == 0
    sizes = dict(con.execute("SELECT segment_key, size FROM segments.evaluations WHERE as_of = ?", [D1]).fetchall())
    assert sizes == expected
    rows = dict(con.execute("SELECT segment_key, count(*) FROM segments.snapshots GROUP BY 1").fetchall())
    # A dense segment is a word of 64 customers a row; a sparse one (~1 %) a row per member; nobody: no rows.
    assert rows["half"] <= n / 64 + expected["half"] / snapshots.DENSE * 0.01 + 100
    assert rows["most"] <= n / 64 + 100
    assert rows["few"] <= expected["few"]
    assert "nobody" not in rows
    assert sum(rows.values()) * 10 < members
    # O(members) bytes: at most one byte a member, plus DuckDB's block granularity (256 kB blocks, a few
    # per table). One change row a member took ~5 bytes a member: over 4.5 MB here.
    assert grown <= members + 4 * 256 * 1024, (grown, members)

    # Every member reads back; a second identical day adds no changes.
    assert len(members_at(con, "half", D1)) == expected["half"]
    arms = dict(members_at(con, "ab", D1))
    assert len(arms) == expected["ab"] and set(arms.values()) == {"a", "b"}
    _record(con, segments, D1 + timedelta(days=1), amounts)
    assert _count(con, "SELECT count(*) FROM segments.changes") == 0
    assert _count(con, "SELECT count(*) FROM segments.membership WHERE segment_key = 'most'") == expected["most"]


def test_backfill_before_the_first_date_moves_the_snapshot(tmp_path: Path, make_marts, segment_set) -> None:
    con = make_marts(tmp_path / "db.duckdb", "SELECT 'x' AS customer_id, 0 AS total_amount")
    segments = segment_set(tmp_path, SEGMENTS)
    d1, d2, d3 = D1, D1 + timedelta(days=1), D1 + timedelta(days=2)
    day3 = {f"c{i:03d}": (i * 37) % 1000 for i in range(300)}
    day1 = {f"c{i:03d}": (i * 53) % 1000 for i in range(50, 320)}
    _record(con, segments, d3, day3)
    assert con.execute("SELECT DISTINCT as_of FROM segments.snapshots").fetchall() == [(d3,)]
    _record(con, segments, d1, day1)
    # The snapshot is on the new first date; the old first date is now its changes from there.
    assert con.execute("SELECT DISTINCT as_of FROM segments.snapshots").fetchall() == [(d1,)]
    changes = {
        c for (c,) in con.execute("SELECT customer_id FROM segments.changes WHERE segment_key = 'most'").fetchall()
    }
    most1 = {c for c, a in day1.items() if a >= 100}
    most3 = {c for c, a in day3.items() if a >= 100}
    assert changes == most1 ^ most3
    assert {c for c, _ in members_at(con, "most", d1)} == most1
    assert {c for c, _ in members_at(con, "most", d2)} == most1
    assert {c for c, _ in members_at(con, "most", d3)} == most3


def _reference(evaluation, key: str) -> dict[str, str | None]:
    arms = evaluation.arms(key)
    return {c: arms.get(c) for c in evaluation.members(key)}


def _read_all(con, keys, days) -> dict:
    """Every reader's answer for every (segment, day)."""
    out = {}
    for day in days:
        for key in keys:
            out[("members_at", key, day)] = dict(members_at(con, key, day))
            out[("membership", key, day)] = dict(
                con.execute(
                    "SELECT customer_id, arm FROM segments.membership WHERE segment_key = ? "
                    "AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)",
                    [key, day, day],
                ).fetchall()
            )
        # Many segments at once (what backfills read).
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _acrm_days AS SELECT unnest(?::VARCHAR[]) AS segment_key, ?::DATE AS day",
            [list(keys), day],
        )
        rows = con.execute(members_sql("SELECT segment_key, day FROM _acrm_days")).fetchall()
        for key in keys:
            out[("members_on_days", key, day)] = {c: a for k, c, a in rows if k == key}
        con.execute("DROP TABLE _acrm_days")
    return out


@pytest.mark.parametrize("states", ["kept", "dropped"])
def test_random_order_with_reruns_reads_back_what_was_recorded_last(
    tmp_path: Path, states: str, make_marts, segment_set
) -> None:
    """`kept`: the dates around each recording mostly come from the kept states (state.py); `dropped`: the
    state files are removed before each recording, so every date around it is rebuilt from the changelog."""
    text = SEGMENTS + "---\nkey: by_amount\nfrom: {union: [few]}\nsplit: {by_field: total_amount}\n"
    keys = [*KEYS, "by_amount"]
    days = [D1 + timedelta(days=i) for i in range(6)]
    for seed in range(4):
        rng = random.Random(seed)
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        con = make_marts(folder / "db.duckdb", "SELECT 'x' AS customer_id, 0 AS total_amount")
        segments = segment_set(folder, text)
        recorded: dict[date, dict[str, dict]] = {}  # the last recording of each date
        order = [rng.choice(days) for _ in range(9)] + [rng.choice(list({*days}))]
        for step, day in enumerate(order):
            # Customers come and go; amounts move (so members enter, exit and change arm).
            first, last = rng.randrange(0, 60), rng.randrange(200, 320)
            amounts = {f"c{i:03d}": rng.choice([rng.randrange(0, 1000), 995, 999]) for i in range(first, last)}
            if states == "dropped":
                shutil.rmtree(folder / "db.duckdb.segment-state", ignore_errors=True)
            evaluation = _record(con, segments, day, amounts, keys)
            recorded[day] = {k: _reference(evaluation, k) for k in keys}

            if step % 3 and step != len(order) - 1:
                continue
            probe = [days[0] - timedelta(days=1), *days, days[-1] + timedelta(days=30)]
            got = _read_all(con, keys, probe)
            for d in probe:
                earlier = [r for r in recorded if r <= d]
                for key in keys:
                    want = recorded[max(earlier)][key] if earlier else {}
                    for reader in ("members_at", "membership", "members_on_days"):
                        assert got[(reader, key, d)] == want, f"seed {seed} step {step} {reader} {key} {d}"
            # segments_of: the customer's segments and arms on each date.
            for d in probe[1:-1:2]:
                earlier = [r for r in recorded if r <= d]
                for customer in ("c000", "c059", "c150", "c299", "c319"):
                    want = sorted(
                        (k, m[customer])
                        for k, m in (recorded[max(earlier)] if earlier else {}).items()
                        if customer in m
                    )
                    assert segments_of(con, customer, d) == want, f"seed {seed} step {step} {customer} {d}"
            # Sizes, entered and exited compare each date with the previous recorded one.
            dates = sorted(recorded)
            for i, d in enumerate(dates):
                for key in keys:
                    now = recorded[d][key]
                    prev = recorded[dates[i - 1]][key] if i else {}
                    row = con.execute(
                        "SELECT size, entered, exited FROM segments.evaluations WHERE segment_key = ? AND as_of = ?",
                        [key, d],
                    ).fetchall()
                    assert row == [(len(now), len(now.keys() - prev.keys()), len(prev.keys() - now.keys()))], (
                        f"seed {seed} step {step} {key} {d}"
                    )
            # One snapshot date per segment: its first recorded date; no change on or before it.
            firsts = dict(con.execute("SELECT segment_key, min(as_of) FROM segments.snapshots GROUP BY 1").fetchall())
            assert all(f == dates[0] for f in firsts.values())
            assert _count(con, "SELECT count(*) FROM segments.changes WHERE as_of <= ?", [dates[0]]) == 0
        con.close()
