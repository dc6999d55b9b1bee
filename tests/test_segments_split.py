"""Splits: arms stable per customer across runs and data changes, sizes near the requested shares."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np

from acrm_pipelines.segments.evaluate import evaluate

SEGMENTS = """\
key: everyone
rules: {field: customer_id, op: is_not_null}
---
key: holdout
from: {union: [everyone]}
split: {control: 10%, salt: spring-2026}
---
key: abc
from: {union: [everyone]}
split: {arms: {a: 50, b: 30, c: 20}, salt: subject-test}
---
key: abc_other_salt
from: {union: [everyone]}
split: {arms: {a: 50, b: 30, c: 20}, salt: another-test}
"""
N = 100_000


def bucket(salt: str, customer_id: str) -> float:
    """The documented bucket, computed independently of the engine."""
    return int(hashlib.md5(f"{salt}:{customer_id}".encode()).hexdigest()[:8], 16) / 2**32 * 100


def test_shares_within_tolerance_and_stable(tmp_path: Path, make_marts, segment_set) -> None:
    con = make_marts(
        tmp_path / "db.duckdb", f"SELECT 'C' || lpad(i::VARCHAR, 8, '0') AS customer_id FROM range({N}) t(i)"
    )
    segments = segment_set(tmp_path, SEGMENTS)
    first = evaluate(con, segments, date(2024, 1, 1))
    holdout = first.arm_sizes("holdout")
    # Tolerance: 5 standard deviations of a binomial share on 100k customers (~0.5 percentage points).
    assert abs(holdout["control"] / N - 0.10) < 5 * np.sqrt(0.1 * 0.9 / N)
    sizes = first.arm_sizes("abc")
    for arm, share in {"a": 0.5, "b": 0.3, "c": 0.2}.items():
        assert abs(sizes[arm] / N - share) < 5 * np.sqrt(share * (1 - share) / N), (arm, sizes)

    # The arms follow the documented md5 bucket (checked on a sample against hashlib).
    arms = first.arms("abc")
    for customer in list(arms)[:: N // 500]:
        b = bucket("subject-test", customer)
        assert arms[customer] == ("a" if b < 50 else "b" if b < 80 else "c"), customer
    holdout_arms = first.arms("holdout")
    for customer in list(holdout_arms)[:: N // 500]:
        assert holdout_arms[customer] == ("control" if bucket("spring-2026", customer) < 10 else "treatment")

    # Data changes: half the customers leave, new ones arrive; everyone left keeps their arm.
    con.execute(
        "CREATE OR REPLACE TABLE marts.customer_features AS "
        f"SELECT 'C' || lpad(i::VARCHAR, 8, '0') AS customer_id FROM range({N // 2}, {N + N // 2}) t(i)"
    )
    second = evaluate(con, segments, date(2024, 1, 2))
    again = second.arms("abc")
    common = set(arms) & set(again)
    assert len(common) == N // 2
    assert all(arms[c] == again[c] for c in common)

    # Another salt reshuffles: about half of the customers change arm (0.5² + 0.3² + 0.2² = 38 % stay).
    other = first.arms("abc_other_salt")
    same = sum(arms[c] == other[c] for c in arms) / N
    assert 0.36 < same < 0.40


def test_a_frozen_membership_keeps_its_arms_and_skips_customers_who_left(
    tmp_path: Path, make_marts, segment_set
) -> None:
    """A static or inactive segment is placed from its stored members and arms, not re-evaluated."""
    from acrm_pipelines.segments.evaluate import Fixed

    con = make_marts(tmp_path / "db.duckdb", "SELECT * FROM (VALUES ('a'), ('b'), ('c'), ('d')) t(customer_id)")
    segments = segment_set(tmp_path, SEGMENTS)
    # 'x' is no longer in the features; 'd' was not a member when it froze.
    stored = Fixed(["c", "x", "a", "b"], ["a", "c", None, "b"])
    result = evaluate(con, segments, date(2024, 1, 1), keys=["abc"], fixed={"abc": stored})
    assert result.members("abc") == ["a", "b", "c"]
    assert result.arms("abc") == {"c": "a", "b": "b"}  # a froze without an arm
    assert result.arm_sizes("abc") == {"a": 1, "b": 1, "c": 0}


def test_forty_thousand_field_values_each_get_their_own_arm(tmp_path: Path, make_marts, segment_set) -> None:
    """Arm codes were 16-bit: past 32,767 values customers landed in other values' arms, silently. Checked
    on the evaluation, on the recorded history of a first day, and after a nightly diff that moves arms."""
    from acrm_pipelines.segments.history import record
    from acrm_pipelines.segments.members import members_at

    n = 40_000
    db = tmp_path / "db.duckdb"
    con = make_marts(
        db, f"SELECT 'C' || lpad(i::VARCHAR, 6, '0') AS customer_id, 'v' || i AS city FROM range({n}) t(i)"
    )
    segments = segment_set(
        tmp_path, "key: by_city\nrules: {field: customer_id, op: is_not_null}\nsplit: {by_field: city}\n"
    )
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    result = evaluate(con, segments, d1)
    expected = {f"C{i:06d}": f"v{i}" for i in range(n)}
    assert result.arms("by_city") == expected
    assert len(result.arm_sizes("by_city")) == n and set(result.arm_sizes("by_city").values()) == {1}
    record(con, result, ["by_city"], {"by_city": "v1"})
    assert dict(members_at(con, "by_city", d1)) == expected
    # Day 2: every customer takes the next customer's value (the last one wraps around): all move arm.
    con.execute(
        f"CREATE OR REPLACE TABLE marts.customer_features AS SELECT 'C' || lpad(i::VARCHAR, 6, '0') AS customer_id, "
        f"'v' || ((i + 1) % {n}) AS city FROM range({n}) t(i)"
    )
    moved = {f"C{i:06d}": f"v{(i + 1) % n}" for i in range(n)}
    record(con, evaluate(con, segments, d2), ["by_city"], {"by_city": "v1"})
    assert dict(members_at(con, "by_city", d2)) == moved
    assert dict(members_at(con, "by_city", d1)) == expected
