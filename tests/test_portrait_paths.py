"""Segment portraits from the kept bitset states equal those from the membership rows, and hand-worked numbers.

300 customers C0000..C0299 on a DuckDB file (so the segments step keeps its states): `amount_365d` is
(37·i mod 100000) / 100 as DECIMAL(18,2) and `orders_365d` is i mod 5 (the mart's types), except C0007, whose
both are NULL. City A is i ≡ 0 mod 3 on D1 and i ≡ 0 mod 4 on D2. After D2 is recorded the features change:
C0005 loses its row (still a member in the index, but the portrait's inner join drops it), and X0001 (amount
1000.00, 3 orders) arrives: in the base, in no segment. A second run gives C0001 an amount near 10^14, whose
cents are past 2^53: sums exact only as integers, not as float64.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from acrm_pipelines.analytics.portrait import TABLE, portrait
from acrm_pipelines.segments import state

D1, D2 = date(2024, 6, 3), date(2024, 6, 4)
N = 300
SALT = "portrait-test"
SEGMENTS = f"""\
key: everyone
rules: {{field: customer_id, op: is_not_null}}
---
key: city_a
rules: {{field: city, op: "=", value: A}}
---
key: abc
from: {{union: [everyone]}}
split: {{arms: {{a: 50, b: 30, c: 20}}, salt: {SALT}}}
---
key: few
rules: {{field: customer_id, op: in, value: [C0005, C0007, C0010]}}
---
key: nulls_only
rules: {{field: customer_id, op: in, value: [C0005, C0007]}}
---
key: gone_only
rules: {{field: customer_id, op: in, value: [C0005]}}
---
key: nobody
rules: {{field: city, op: "=", value: Z}}
"""


def features_sql(city_every: int) -> str:
    return f"""SELECT 'C' || lpad(i::VARCHAR, 4, '0') AS customer_id,
        CASE WHEN i % {city_every} = 0 THEN 'A' ELSE 'B' END AS city,
        CASE WHEN i <> 7 THEN CAST(((i * 37) % 100000)::DECIMAL(18, 0) * 0.01 AS DECIMAL(18, 2)) END AS amount_365d,
        CASE WHEN i <> 7 THEN (i % 5)::INTEGER END AS orders_365d
    FROM range({N}) t(i)"""


BIG = Decimal("99999999999999.99")


def amount(i: int, big: Decimal | None) -> Decimal:
    return big if i == 1 and big else Decimal((i * 37) % 100000) / 100


def arm_of(i: int) -> str:
    """The documented split bucket (md5 of salt:customer), computed independently of the engine."""
    b = int(hashlib.md5(f"{SALT}:C{i:04d}".encode()).hexdigest()[:8], 16) / 2**32 * 100
    return "a" if b < 50 else "b" if b < 80 else "c"


def rows(con) -> list[tuple]:
    return con.execute(f"SELECT * FROM {TABLE} WHERE as_of = ? ORDER BY segment_key, arm NULLS FIRST", [D2]).fetchall()


@pytest.fixture(params=[None, BIG], ids=["small", "big"])
def recorded(request, tmp_path: Path, make_marts, segment_set, record_segments):
    con = make_marts(tmp_path / "db.duckdb", features_sql(3))
    segments = segment_set(tmp_path, SEGMENTS)
    record_segments(con, segments, D1)
    con.execute(f"CREATE OR REPLACE TABLE marts.customer_features AS {features_sql(4)}")
    record_segments(con, segments, D2)
    con.execute("DELETE FROM marts.customer_features WHERE customer_id = 'C0005'")
    con.execute("INSERT INTO marts.customer_features VALUES ('X0001', 'B', 1000.00, 3)")
    if request.param:
        con.execute("UPDATE marts.customer_features SET amount_365d = ? WHERE customer_id = 'C0001'", [request.param])
    yield con, list(segments.order), request.param
    con.close()


def test_the_bitset_path_equals_the_sql_path_and_the_hand_numbers(recorded) -> None:
    con, keys, big = recorded
    assert set(state.load(con, dict.fromkeys(keys, D2))) == set(keys)  # every segment takes the bitset path
    portrait(con, D2)
    from_bits = rows(con)

    # Some segments without their state (the split one among them): both paths in one run.
    con.execute("DELETE FROM segments.state_days WHERE segment_key IN ('abc', 'few') AND as_of = ?", [D2])
    portrait(con, D2)
    mixed = rows(con)

    # No state at all (the folder gone): every segment from the membership rows, as before the states.
    shutil.rmtree(state.state_dir(con))
    assert state.load(con, dict.fromkeys(keys, D2)) == {}
    portrait(con, D2)
    from_rows = rows(con)

    assert from_bits == from_rows
    assert mixed == from_rows

    got = {(r[1], r[2]): r for r in from_bits}
    # A segment whose only member has no features row, and an empty one: no row (the inner join has no group).
    assert {k for k, _ in got} == {"everyone", "city_a", "abc", "few", "nulls_only"}

    featured = [i for i in range(N) if i != 5]  # C0005 has no features row any more
    with_values = [i for i in featured if i != 7]
    base_customers = len(featured) + 1  # and X0001
    revenue = sum(amount(i, big) for i in with_values)
    base_revenue = revenue + Decimal("1000.00")
    orders = sum(i % 5 for i in with_values)

    _, _, arm, size, share, share_rev, avg_check, per_customer, entered, exited = got[("everyone", None)]
    assert (arm, size, entered, exited) == (None, 299, 0, 0)
    assert share == pytest.approx(299 / 300)
    assert share_rev == pytest.approx(float(revenue / base_revenue), rel=1e-12)
    assert avg_check == pytest.approx(float(revenue / orders), rel=1e-12)
    assert per_customer == pytest.approx(orders / 299, rel=1e-12)

    # City A: i ≡ 0 mod 4 on D2 (C0005 and C0007 are not in it), i ≡ 0 mod 3 on D1.
    now = {i for i in range(N) if i % 4 == 0}
    before = {i for i in range(N) if i % 3 == 0}
    row = got[("city_a", None)]
    assert row[3:5] == (len(now), len(now) / base_customers)
    assert row[5] == pytest.approx(float(sum(amount(i, big) for i in now) / base_revenue), rel=1e-12)
    assert row[8:] == (len(now - before), len(before - now))

    # C0007 (NULL features) and C0010 (3.70, 0 orders) count, C0005 (no row) not: 3.70 over 0 orders, so no
    # average check; 0 orders over 2 customers.
    share_of_revenue = pytest.approx(3.70 / float(base_revenue), rel=1e-12)
    assert got[("few", None)][3:] == (2, 2 / 300, share_of_revenue, None, 0.0, 0, 0)
    # C0007 alone: NULL sums, so NULL shares of revenue and orders.
    assert got[("nulls_only", None)][3:] == (1, 1 / 300, None, None, None, 0, 0)

    # The split: the whole row, then a row per arm (no entered/exited), by the documented bucket.
    assert got[("abc", None)][3] == 299
    for name in "abc":
        members = [i for i in featured if arm_of(i) == name]
        in_arm = got[("abc", name)]
        assert in_arm[3] == len(members) > 0
        assert in_arm[5] == pytest.approx(
            float(sum(amount(i, big) for i in members if i != 7) / base_revenue), rel=1e-12
        )
        assert in_arm[8:] == (None, None)
