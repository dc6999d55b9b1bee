"""`acrm members` and `acrm segments-of` say when the history does not know the answer (exit 1), never answer
silently: a date before the first evaluation or after the last run, an unknown customer or segment.

A real DuckDB file with hand-set features and memberships recorded by the engine, as the pipeline records
them: every segment on 2024-01-01; on 2024-01-03 only the dynamic active ones (the static segment is frozen,
the inactive one is not re-evaluated); nothing on 2024-01-02. The commands run in-process (`main`).
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import duckdb
import pytest

from acrm_pipelines.cli import main
from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.segments.history import record

SEGMENTS = """\
key: big
rules: {field: total_amount, op: ">=", value: 100}
---
key: ab
from: {union: [big]}
split: {arms: {a: 50, b: 50}, salt: s}
---
key: huge
rules: {field: total_amount, op: ">=", value: 100000}
---
key: frozen
type: static
rules: {field: total_amount, op: ">=", value: 500}
---
key: paused
active: false
rules: {field: total_amount, op: ">=", value: 1}
---
key: fresh
rules: {field: total_amount, op: ">=", value: 1000}
"""
D1, D2, D3, D4 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)
BEFORE = date(2023, 12, 31)


def features(amounts: dict[str, int]) -> list[dict]:
    return [{"customer_id": c, "total_amount": float(a)} for c, a in amounts.items()]


@pytest.fixture
def project(tmp_path: Path, monkeypatch, segment_set, set_features) -> Path:
    db = tmp_path / "acrm.duckdb"
    segments = segment_set(tmp_path, SEGMENTS)
    with duckdb.connect(str(db)) as con:
        for day, amounts, keys in [
            (D1, {"c1": 150, "c2": 50, "c3": 600}, ["big", "ab", "huge", "frozen", "paused"]),
            (D3, {"c1": 150, "c2": 120, "c3": 600, "c4": 10}, ["big", "ab", "huge"]),
        ]:
            set_features(con, features(amounts))
            result = evaluate(con, segments, day, keys=keys)
            record(con, result, keys, {k: segments[k].version() for k in keys})
        # c6 arrives with the next features build; no segment has been evaluated since
        set_features(con, features({"c1": 150, "c2": 120, "c3": 600, "c4": 10, "c6": 5}))
    monkeypatch.setenv("ACRM_DUCKDB_PATH", str(db))
    monkeypatch.setenv("ACRM_SEGMENTS_DIR", str(tmp_path / "segments"))
    return db


def acrm(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def members(out: str) -> dict[str, str]:
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["customer_id", "arm"]
    return {r[0]: r[1] for r in rows[1:]}


# --- members ------------------------------------------------------------------------------------------------


def test_members_on_an_evaluated_date(project, capsys) -> None:
    code, out, err = acrm(capsys, "members", "big", "--as-of", str(D3))
    assert (code, members(out), err) == (0, {"c1": "", "c2": "", "c3": ""}, "")


def test_members_between_two_evaluations_read_the_earlier_one_and_say_so(project, capsys) -> None:
    code, out, err = acrm(capsys, "members", "big", "--as-of", str(D2))
    assert (code, members(out)) == (0, {"c1": "", "c3": ""})
    assert err == (
        "note: big was not evaluated on 2024-01-02; these are its members of 2024-01-01, the evaluation before it\n"
    )


def test_members_after_the_last_evaluation_are_not_known(project, capsys) -> None:
    code, out, err = acrm(capsys, "members", "ab", "--as-of", str(D4))
    assert (code, out) == (1, "")
    assert err == (
        "acrm members: segment 'ab' was last evaluated on 2024-01-03; 2024-01-04 is later "
        "(run `acrm run --as-of 2024-01-04`)\n"
    )


def test_members_before_the_first_evaluation_are_not_known(project, capsys) -> None:
    code, out, err = acrm(capsys, "members", "big", "--as-of", str(BEFORE))
    assert (code, out) == (1, "")
    assert err == (
        "acrm members: segment 'big' was first evaluated on 2024-01-01; 2023-12-31 is earlier, so its members then "
        "are not known (run `acrm backfill --from 2023-12-31 --to 2023-12-31` to record them)\n"
    )


def test_members_of_a_segment_never_evaluated(project, capsys) -> None:
    code, out, err = acrm(capsys, "members", "fresh", "--as-of", str(D3))
    assert (code, out) == (1, "")
    assert err == "acrm members: segment 'fresh' has never been evaluated (run `acrm run --as-of 2024-01-03`)\n"


def test_members_of_an_unknown_segment(project, capsys) -> None:
    code, out, err = acrm(capsys, "members", "bigg", "--as-of", str(D3))
    assert (code, out) == (1, "")
    assert err.startswith("acrm members: unknown segment 'bigg'")


def test_frozen_segments_answer_later_dates_with_a_note(project, capsys) -> None:
    """Static and inactive segments are not re-evaluated: their stored membership is the answer."""
    code, out, err = acrm(capsys, "members", "frozen", "--as-of", str(D4))
    assert (code, members(out)) == (0, {"c3": ""})
    assert err == "note: frozen is static: frozen since 2024-01-01, its members of 2024-01-01\n"
    code, out, err = acrm(capsys, "members", "paused", "--as-of", str(D4))
    assert (code, members(out)) == (0, {"c1": "", "c2": "", "c3": ""})
    assert err == "note: paused is inactive (active: false): not re-evaluated since 2024-01-01, its members then\n"


def test_a_static_segment_before_its_first_evaluation_is_not_known(project, capsys) -> None:
    """A backfill would not record it (it stays frozen), so no backfill is suggested."""
    code, out, err = acrm(capsys, "members", "frozen", "--as-of", str(BEFORE))
    assert (code, out) == (1, "")
    assert err == (
        "acrm members: segment 'frozen' was first evaluated on 2024-01-01; 2023-12-31 is earlier, so its members "
        "then are not known\n"
    )


def test_an_empty_segment_says_it_is_empty(project, capsys) -> None:
    code, out, err = acrm(capsys, "members", "huge", "--as-of", str(D3))
    assert (code, members(out)) == (0, {})
    assert err == "note: huge has no members as of 2024-01-03\n"


# --- segments-of --------------------------------------------------------------------------------------------

NEVER = "note: not known for 1 segment(s) not evaluated by {day}: fresh\n"


def test_segments_of_a_customer(project, capsys) -> None:
    code, out, err = acrm(capsys, "segments-of", "c3", "--as-of", str(D3))
    arm = out.splitlines()[0]
    assert arm in ("ab\tarm=a", "ab\tarm=b")
    # frozen and paused: their membership of 2024-01-01 stands
    assert (code, out.splitlines()[1:], err) == (0, ["big", "frozen", "paused"], NEVER.format(day=D3))


def test_segments_of_an_unknown_customer(project, capsys) -> None:
    code, out, err = acrm(capsys, "segments-of", "c5", "--as-of", str(D3))
    assert (code, out) == (1, "")
    assert err == (
        "acrm segments-of: customer 'c5' is not known: not in marts.customer_features nor in any evaluation "
        "(segments.customer_index)\n"
    )


def test_segments_of_a_known_customer_in_no_segment(project, capsys) -> None:
    code, out, err = acrm(capsys, "segments-of", "c4", "--as-of", str(D3))
    assert (code, out) == (0, "")
    assert err == NEVER.format(day=D3) + "customer c4 is in no segment as of 2024-01-03\n"
    # c6 is in the features only: on the dates recorded, it was in no segment
    code, out, err = acrm(capsys, "segments-of", "c6", "--as-of", str(D1))
    assert (code, out) == (0, "")
    assert err.endswith("customer c6 is in no segment as of 2024-01-01\n")


def test_segments_of_before_any_history(project, capsys) -> None:
    code, out, err = acrm(capsys, "segments-of", "c1", "--as-of", str(BEFORE))
    assert (code, out) == (1, "")
    assert err == (
        "acrm segments-of: no segment was evaluated on or before 2023-12-31: the history starts on 2024-01-01 "
        "(run `acrm backfill --from 2023-12-31 --to 2023-12-31` to record it)\n"
    )


def test_segments_of_after_the_last_run(project, capsys) -> None:
    code, out, err = acrm(capsys, "segments-of", "c1", "--as-of", str(D4))
    assert (code, out) == (1, "")
    assert err == (
        "acrm segments-of: segments were last evaluated on 2024-01-03; 2024-01-04 is later "
        "(run `acrm run --as-of 2024-01-04`)\n"
    )


def test_segments_of_on_a_day_without_evaluations(project, capsys) -> None:
    code, out, err = acrm(capsys, "segments-of", "c1", "--as-of", str(D2))
    assert code == 0
    assert out.splitlines()[1:] == ["big", "paused"]
    assert err == (
        "note: no segment was evaluated on 2024-01-02; these are the memberships of 2024-01-01, "
        "the evaluation before it\n"
    )


def test_segments_of_with_no_history_at_all(tmp_path: Path, monkeypatch, capsys, segment_set, set_features) -> None:
    db = tmp_path / "acrm.duckdb"
    with duckdb.connect(str(db)) as con:
        set_features(con, features({"c1": 150}))
    segment_set(tmp_path, SEGMENTS)
    monkeypatch.setenv("ACRM_DUCKDB_PATH", str(db))
    monkeypatch.setenv("ACRM_SEGMENTS_DIR", str(tmp_path / "segments"))
    code, out, err = acrm(capsys, "segments-of", "c1", "--as-of", str(D1))
    assert (code, out) == (1, "")
    assert err == "acrm segments-of: no segment has been evaluated yet (run `acrm run --as-of DATE`)\n"
    code, out, err = acrm(capsys, "members", "big", "--as-of", str(D1))
    assert (code, out) == (1, "")
    assert err == "acrm members: segment 'big' has never been evaluated (run `acrm run --as-of 2024-01-01`)\n"
