"""Hold-out uplift of an export (docs/analytics.md, "Uplift"): who was sent against who was held back.

An export with a hold-out arm records its members of that arm as `held_back` and sends the others. From the
export's first delivery date D, both groups are measured on one clock: completed orders placed from the end of
D (the night the export ran) up to the campaign's attribution window later, as far as the as-of day has seen.

Intervals (95 %): conversion, the difference of two proportions with Newcombe's hybrid score interval and the
score test's p-value (statsmodels `confint_proportions_2indep`, `test_proportions_2indep`); revenue per
customer, Welch's t interval and test (scipy `ttest_ind(equal_var=False)`). Below MIN_GROUP customers in a
group, or fewer than MIN_EVENTS conversions or non-conversions in one, the result is "not enough data" and no
interval is given. A sample-ratio mismatch (the groups' sizes against the split's weights, chi-square,
p < SRM_ALPHA) is flagged: then the split, not the campaign, may explain a difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import numpy as np

from acrm_pipelines.exports.validate import ExportSet
from acrm_pipelines.segments.dates import cutoff
from acrm_pipelines.segments.validate import SegmentSet

MIN_GROUP = 30
MIN_EVENTS = 5
SRM_ALPHA = 0.001
NOT_ENOUGH = "not enough data"


@dataclass(frozen=True)
class Uplift:
    treatment_n: int
    control_n: int
    treatment_conversion: float | None
    control_conversion: float | None
    uplift: float | None = None  # treatment - control conversion
    uplift_ci_low: float | None = None
    uplift_ci_high: float | None = None
    p_value: float | None = None
    revenue_uplift: float | None = None  # treatment - control revenue per customer
    revenue_ci_low: float | None = None
    revenue_ci_high: float | None = None
    revenue_p_value: float | None = None
    srm_p_value: float | None = None
    srm: bool = False
    note: str = ""


def compare(
    treated: np.ndarray, treated_revenue: np.ndarray, control: np.ndarray, control_revenue: np.ndarray,
    control_share: float | None = None,
) -> Uplift:  # fmt: skip
    """`treated`/`control`: 1 for a customer who converted, else 0; the revenues per customer alike.
    `control_share`: the share of the two groups the split meant for control (None: not checked)."""
    n_t, n_c = len(treated), len(control)
    conv_t = float(treated.mean()) if n_t else None
    conv_c = float(control.mean()) if n_c else None
    srm_p = srm_p_value(n_t, n_c, control_share) if control_share is not None and n_t + n_c else None
    srm = srm_p is not None and srm_p < SRM_ALPHA
    base = {"treatment_n": n_t, "control_n": n_c, "treatment_conversion": conv_t, "control_conversion": conv_c}
    base |= {"srm_p_value": srm_p, "srm": srm}
    x_t, x_c = int(treated.sum()), int(control.sum())
    if min(n_t, n_c) < MIN_GROUP or min(x_t, x_c, n_t - x_t, n_c - x_c) < MIN_EVENTS:
        return Uplift(**base, note=NOT_ENOUGH)
    # Imported here: scipy and statsmodels take ~1 s to import, and most runs measure no hold-out.
    from scipy import stats
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff")
    p = test_proportions_2indep(x_t, n_t, x_c, n_c, method="score", compare="diff").pvalue
    welch = stats.ttest_ind(treated_revenue, control_revenue, equal_var=False)
    rev = welch.confidence_interval(0.95)
    revenue_p = float(welch.pvalue) if not math.isnan(welch.pvalue) else None
    return Uplift(
        **base,
        uplift=conv_t - conv_c,
        uplift_ci_low=float(low),
        uplift_ci_high=float(high),
        p_value=float(p),
        revenue_uplift=float(treated_revenue.mean() - control_revenue.mean()),
        revenue_ci_low=None if math.isnan(rev.low) else float(rev.low),
        revenue_ci_high=None if math.isnan(rev.high) else float(rev.high),
        revenue_p_value=revenue_p,
        note="sample ratio mismatch: the groups' sizes do not match the split" if srm else "",
    )


def srm_p_value(treatment_n: int, control_n: int, control_share: float) -> float:
    """Chi-square goodness of fit of the two groups' sizes to the split's shares."""
    from scipy import stats

    total = treatment_n + control_n
    expected = [total * (1 - control_share), total * control_share]
    return float(stats.chisquare([treatment_n, control_n], f_exp=expected).pvalue)


# --- measuring an export's groups in the DuckDB file -------------------------------------------------------------


@dataclass(frozen=True)
class HoldOut:
    """An export whose audience has a hold-out arm, and how its groups are measured."""

    export_key: str
    campaign: str
    window_hours: int
    control_share: float | None  # what the segment's split meant for the hold-out arm, of the export's arms


TABLE = "analytics.campaign_uplift"
COLUMNS = ["as_of", "export_key", "campaign", "first_day", "window_end", "window_complete"] + list(
    Uplift.__dataclass_fields__
)
DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    as_of DATE, export_key VARCHAR, campaign VARCHAR, first_day DATE, window_end TIMESTAMP, window_complete BOOLEAN,
    treatment_n BIGINT, control_n BIGINT, treatment_conversion DOUBLE, control_conversion DOUBLE, uplift DOUBLE,
    uplift_ci_low DOUBLE, uplift_ci_high DOUBLE, p_value DOUBLE, revenue_uplift DOUBLE, revenue_ci_low DOUBLE,
    revenue_ci_high DOUBLE, revenue_p_value DOUBLE, srm_p_value DOUBLE, srm BOOLEAN, note VARCHAR)"""

# Each customer of the export's first delivery date, sent (treated) or held back, with the completed orders placed
# in [start, end]: from the end of that day, the night the export ran, for both groups alike.
OUTCOMES_SQL = """
    WITH groups AS (
        SELECT customer_id, bool_or(status = 'sent') AS treated FROM exports.deliveries
        WHERE export_key = ? AND as_of = ? AND status IN ('sent', 'held_back') GROUP BY customer_id)
    SELECT g.treated, (count(o.order_id) > 0)::INT AS converted, coalesce(sum(o.total_amount), 0)::DOUBLE AS revenue
    FROM groups g LEFT JOIN marts.fct_orders o
        ON o.customer_id = g.customer_id AND o.status = 'completed' AND o.ordered_at >= ? AND o.ordered_at <= ?
    GROUP BY g.customer_id, g.treated"""


def measure(con: duckdb.DuckDBPyConnection, holdouts: list[HoldOut], as_of: date) -> list[dict]:
    """One row per export with a hold-out arm that has held back someone by `as_of` (fct_orders is cut at it)."""
    rows = []
    for h in holdouts:
        first = con.execute(
            "SELECT min(as_of) FROM exports.deliveries WHERE export_key = ? AND as_of <= ? AND status = 'held_back'",
            [h.export_key, as_of],
        ).fetchone()[0]
        if first is None:
            continue
        start = cutoff(first)
        end = start + timedelta(hours=h.window_hours)
        outcomes = con.execute(OUTCOMES_SQL, [h.export_key, first, start, end]).fetchnumpy()
        treated = outcomes["treated"].astype(bool)
        converted, revenue = outcomes["converted"].astype(int), outcomes["revenue"].astype(float)
        result = compare(converted[treated], revenue[treated], converted[~treated], revenue[~treated], h.control_share)
        where = {"as_of": as_of, "export_key": h.export_key, "campaign": h.campaign, "first_day": first}
        rows.append(where | {"window_end": end, "window_complete": end <= cutoff(as_of)} | result.__dict__)
    return rows


def write(con: duckdb.DuckDBPyConnection, rows: list[dict], as_of: date) -> None:
    """The day's rows replace that day's (a backfill leaves every day)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS analytics")
    con.execute(DDL)
    con.execute(f"DELETE FROM {TABLE} WHERE as_of = ?", [as_of])
    if rows:
        placeholders = ", ".join("?" for _ in COLUMNS)
        con.executemany(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                        [[r[c] for c in COLUMNS] for r in rows])  # fmt: skip


def holdouts(exports: ExportSet, segments: SegmentSet, attribution: dict) -> list[HoldOut]:
    """The active exports whose audience may hold back an arm (a split segment, not one arm of it), with their
    campaign's window (`attribution`: the dbt vars of analytics/attribution.py) and the hold-out arm's share."""
    out = []
    for key in exports.keys:
        export = exports[key]
        if not export.active or not export.hold_out_arm or export.segment is None or export.segment.arm is not None:
            continue
        split = segments[export.segment.segment].split  # the validator made sure the segment exists
        if split is None or split.by_field is not None:
            continue  # no random split: nobody is held back at random
        weights = split.arm_weights()
        if export.hold_out_arm not in weights:
            continue
        share = weights[export.hold_out_arm] / sum(weights.values())
        hours = attribution["attribution_windows"].get(export.campaign, attribution["attribution_default_hours"])
        out.append(HoldOut(key, export.campaign, hours, share))
    return out
