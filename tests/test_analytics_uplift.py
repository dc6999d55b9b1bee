"""Hold-out uplift statistics (acrm_pipelines/analytics/uplift.py) against textbook formulas computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm, t

from acrm_pipelines.analytics.uplift import NOT_ENOUGH, compare

Z = norm.ppf(0.975)


def wilson(x: int, n: int) -> tuple[float, float]:
    """Wilson's score interval for one proportion (no continuity correction)."""
    p = x / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Newcombe (1998), method 10: the hybrid score interval of p1 - p2 from the two Wilson intervals."""
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = wilson(x1, n1), wilson(x2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t.ppf(0.975, df) * math.sqrt(va + vb)
    d = a.mean() - b.mean()
    return d - half, d + half


def groups(rng: np.random.Generator, n_t: int, p_t: float, n_c: int, p_c: float):
    treated = (rng.random(n_t) < p_t).astype(int)
    control = (rng.random(n_c) < p_c).astype(int)
    # Revenue: converters spend a skewed amount, the others nothing.
    return treated, treated * rng.gamma(2.0, 40.0, n_t), control, control * rng.gamma(2.0, 35.0, n_c)


def test_uplift_and_its_intervals_equal_the_textbook_formulas() -> None:
    treated, rev_t, control, rev_c = groups(np.random.default_rng(11), 4000, 0.12, 1000, 0.09)
    result = compare(treated, rev_t, control, rev_c, control_share=0.2)
    x_t, x_c = int(treated.sum()), int(control.sum())
    assert (result.treatment_n, result.control_n) == (4000, 1000)
    assert result.treatment_conversion == x_t / 4000 and result.control_conversion == x_c / 1000
    assert result.uplift == pytest.approx(x_t / 4000 - x_c / 1000, abs=1e-12)
    low, high = newcombe(x_t, 4000, x_c, 1000)
    assert (result.uplift_ci_low, result.uplift_ci_high) == (
        pytest.approx(low, abs=1e-9),
        pytest.approx(high, abs=1e-9),
    )
    # Under "no difference" the score statistic is the pooled z statistic (with the n/(n-1) variance factor).
    pooled = (x_t + x_c) / 5000
    se = math.sqrt(pooled * (1 - pooled) * (1 / 4000 + 1 / 1000) * 5000 / 4999)
    assert result.p_value == pytest.approx(2 * norm.sf(abs(result.uplift) / se), rel=1e-6)
    low, high = welch(rev_t, rev_c)
    assert result.revenue_uplift == pytest.approx(rev_t.mean() - rev_c.mean())
    assert (result.revenue_ci_low, result.revenue_ci_high) == (pytest.approx(low), pytest.approx(high))
    assert not result.srm and result.note == ""


def test_about_5_percent_of_aa_intervals_exclude_zero() -> None:
    """No true effect: the 95 % interval should miss zero in ~5 % of 400 splits (binomial sd ~1.1 points)."""
    rng = np.random.default_rng(2026)
    misses = 0
    for _ in range(400):
        treated, rev_t, control, rev_c = groups(rng, 1500, 0.1, 1500, 0.1)
        result = compare(treated, rev_t, control, rev_c)
        misses += not (result.uplift_ci_low <= 0 <= result.uplift_ci_high)
    assert 0.025 <= misses / 400 <= 0.08


def test_a_sample_ratio_mismatch_is_flagged() -> None:
    rng = np.random.default_rng(5)
    skewed = compare(*groups(rng, 1000, 0.1, 800, 0.1), control_share=0.5)
    assert skewed.srm and skewed.srm_p_value < 0.001 and skewed.note.startswith("sample ratio mismatch")
    fair = compare(*groups(rng, 1000, 0.1, 1010, 0.1), control_share=0.5)
    assert not fair.srm and fair.srm_p_value > 0.5


@pytest.mark.parametrize(("n_c", "p_c"), [(20, 0.5), (400, 0.005)])
def test_too_few_customers_or_conversions_give_no_interval(n_c: int, p_c: float) -> None:
    rng = np.random.default_rng(1)
    treated, rev_t, _, _ = groups(rng, 400, 0.2, 0, 0)
    control = np.zeros(n_c, int)
    control[: round(n_c * p_c)] = 1
    result = compare(treated, rev_t, control, control * 10.0)
    assert result.note == NOT_ENOUGH
    assert result.uplift is None and result.uplift_ci_low is None and result.revenue_uplift is None
    assert result.control_conversion == control.mean()


def test_the_groups_outcomes_equal_a_pandas_computation(tmp_path) -> None:
    """measure() on a generated delivery log and orders: the groups, conversions and revenue per customer,
    against pandas over the same frames (first hold-out date, orders from its end to the window's end)."""
    import duckdb
    import pandas as pd

    from acrm_pipelines.analytics.uplift import HoldOut, measure

    rng = np.random.default_rng(3)
    customers = [f"c{i:04d}" for i in range(3000)]
    held = rng.random(3000) < 0.2
    log = pd.DataFrame(
        {"export_key": "x", "as_of": pd.Timestamp("2025-03-01"), "customer_id": customers,
         "status": np.where(held, "held_back", "sent")}
    )  # fmt: skip
    later = log.sample(200, random_state=1).assign(as_of=pd.Timestamp("2025-03-02"))  # not the first day
    log = pd.concat([log, later, log.head(50).assign(status="suppressed")])
    start = pd.Timestamp("2025-03-02 00:00:00")  # the end of the first day
    n = 6000
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(n)],
            "customer_id": rng.choice(customers, n),
            # from a day before the window to a day after it (window: 72 hours)
            "ordered_at": start + pd.to_timedelta(rng.integers(-86_400, 4 * 86_400, n), unit="s"),
            "total_amount": rng.integers(1, 500, n).astype(float),
            "status": rng.choice(["completed", "cancelled"], n, p=[0.8, 0.2]),
        }
    )
    orders.loc[0, ["ordered_at", "status", "customer_id"]] = [start + pd.Timedelta(hours=72), "completed", "c0001"]
    con = duckdb.connect(str(tmp_path / "u.duckdb"))
    con.execute("CREATE SCHEMA exports; CREATE SCHEMA marts")
    con.execute(
        "CREATE TABLE exports.deliveries AS SELECT export_key, as_of::DATE AS as_of, customer_id, status FROM log"
    )
    con.execute("CREATE TABLE marts.fct_orders AS SELECT * FROM orders")
    (row,) = measure(con, [HoldOut("x", "camp", 72, 0.2)], pd.Timestamp("2025-03-10").date())

    first = log[(log.as_of == log.as_of.min()) & log.status.isin(["sent", "held_back"])]
    inside = orders[(orders.status == "completed") & (orders.ordered_at >= start)
                    & (orders.ordered_at <= start + pd.Timedelta(hours=72))]  # fmt: skip
    per = inside.groupby("customer_id").total_amount.agg(["count", "sum"])
    frame = first.set_index("customer_id").join(per).fillna({"count": 0, "sum": 0.0})
    treated, control = frame[frame.status == "sent"], frame[frame.status == "held_back"]
    assert (row["treatment_n"], row["control_n"]) == (len(treated), len(control))
    assert row["treatment_conversion"] == pytest.approx((treated["count"] > 0).mean())
    assert row["control_conversion"] == pytest.approx((control["count"] > 0).mean())
    assert row["revenue_uplift"] == pytest.approx(treated["sum"].mean() - control["sum"].mean())
    assert row["first_day"] == pd.Timestamp("2025-03-01").date() and row["window_complete"]
