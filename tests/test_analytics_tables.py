"""Cohorts, RFM migration and segment portraits on the demo data, against plain pandas computations.

The pipeline runs on the demo landing folder for a day one calendar month before the demo's end and for the
end itself (so the migration has its earlier built day). The references read only the raw tables (through the
independent features reference, tests/reference/features.py) and the recorded memberships (members_at).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from acrm_pipelines.segments.members import members_at
from tests.cases.demo import DEMO_END
from tests.reference.features import read_raw, reference_features

FROM_DAY = date(2026, 10, 20)  # DEMO_END minus one calendar month


@pytest.fixture(scope="module")
def demo_run(demo_landing, tmp_path_factory, make_settings, run_pipeline):
    # With the repo's exports: the spring audiences hold back the 10 % control arm of spring_target.
    settings = make_settings(tmp_path_factory.mktemp("analytics_demo"), demo_landing, with_exports=True)
    instance = DagsterInstance.ephemeral()
    for day in (FROM_DAY, DEMO_END):
        run_pipeline(settings, day.isoformat(), instance)
    return settings.duckdb_path, read_raw(settings.duckdb_path), instance


def table(db, sql: str, params: list | None = None) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).df()


def test_cohort_retention_equals_pandas(demo_run) -> None:
    db, raw, _ = demo_run
    orders = raw["orders"]
    cut = datetime.combine(DEMO_END + timedelta(days=1), datetime.min.time())
    done = orders[(orders.status == "completed") & (orders.ordered_at < cut)].copy()
    done["month"] = done.ordered_at.dt.to_period("M")
    first = done.groupby("customer_id").month.min().rename("cohort")
    done = done.join(first, on="customer_id")
    sizes = first.value_counts()
    active = done.groupby(["cohort", "month"]).customer_id.nunique()
    expected = {}
    for cohort, customers in sizes.items():
        for month in sorted(done.month.unique()):
            if month >= cohort:
                n = int(active.get((cohort, month), 0))
                expected[(cohort.to_timestamp().date(), (month - cohort).n)] = (int(customers), n)
    got = table(db, "SELECT * FROM analytics.cohort_retention")
    assert {pd.Timestamp(d).date() for d in got.as_of} == {DEMO_END}
    found = {
        (pd.Timestamp(r.cohort_month).date(), int(r.months_since)): (
            int(r.customers), int(r.active_customers))
        for r in got.itertuples()
    }  # fmt: skip
    assert found == expected
    assert (got.share - got.active_customers / got.customers).abs().max() < 1e-12


def test_rfm_migration_equals_pandas(demo_run) -> None:
    db, raw, _ = demo_run
    before = reference_features(raw, FROM_DAY).set_index("customer_id").rfm_segment
    after = reference_features(raw, DEMO_END).set_index("customer_id").rfm_segment
    both = pd.concat([before.rename("from_segment"), after.rename("to_segment")], axis=1, join="inner")
    expected = both.value_counts().to_dict()
    got = table(db, "SELECT * FROM analytics.rfm_migration WHERE as_of = ?", [DEMO_END])
    assert {pd.Timestamp(d).date() for d in got.from_day} == {FROM_DAY}
    assert {(r.from_segment, r.to_segment): int(r.customers) for r in got.itertuples()} == expected


def test_segment_portraits_equal_pandas(demo_run) -> None:
    db, raw, _ = demo_run
    features = reference_features(raw, DEMO_END).set_index("customer_id")
    got = table(db, "SELECT * FROM analytics.segment_portrait WHERE as_of = ?", [DEMO_END])
    with duckdb.connect(str(db), read_only=True) as con:
        keys = [
            k
            for (k,) in con.execute(
                "SELECT segment_key FROM segments.evaluations WHERE as_of = ?", [DEMO_END]
            ).fetchall()
        ]
        members = {k: members_at(con, k, DEMO_END) for k in keys}
        previous = {k: {c for c, _ in members_at(con, k, DEMO_END - timedelta(days=1))} for k in keys}
    assert sorted(got[got.arm.isna()].segment_key) == sorted(keys)
    base_revenue = features.amount_365d.sum()
    for key in keys:
        ids = [c for c, _ in members[key]]
        rows = got[(got.segment_key == key) & got.arm.isna()]
        (row,) = rows.itertuples()
        sub = features.loc[ids]
        assert row.size == len(ids)
        assert row.share_of_base == pytest.approx(len(ids) / len(features))
        assert row.share_of_revenue_365d == pytest.approx(sub.amount_365d.sum() / base_revenue)
        orders = sub.orders_365d.sum()
        assert (pd.isna(row.avg_check_365d) and orders == 0) or row.avg_check_365d == pytest.approx(
            sub.amount_365d.sum() / orders
        )
        if ids:
            assert row.orders_per_customer_365d == pytest.approx(orders / len(ids))
        now = set(ids)
        assert (row.entered, row.exited) == (len(now - previous[key]), len(previous[key] - now))
        arms = pd.Series({c: a for c, a in members[key] if a is not None}, dtype=object)
        for arm, in_arm in arms.groupby(arms).groups.items():
            (arm_row,) = got[(got.segment_key == key) & (got.arm == arm)].itertuples()
            assert arm_row.size == len(in_arm) and pd.isna(arm_row.entered)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.timeout(300)
def test_the_report_draws_every_chart_offline_in_chromium(demo_run, tmp_path, monkeypatch) -> None:
    """`acrm report` on the demo run: one HTML file that Chromium renders with no network (every request other
    than the file itself is refused and recorded); each chart has Plotly's SVG. The screenshot is kept."""
    from playwright.sync_api import sync_playwright

    from acrm_pipelines.cli import main

    assert CHROMIUM.exists(), "run `make system-deps` (as root it installs the Debian package chromium)"
    db, _, _ = demo_run
    monkeypatch.setenv("ACRM_DUCKDB_PATH", str(db))
    page_path = tmp_path / "report.html"
    assert main(["report", "--as-of", DEMO_END.isoformat(), "-o", str(page_path)]) == 0
    text = page_path.read_text()
    assert text.count("<h2>") == 5 and "No data" not in text
    requested: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.route(
            lambda url: not url.startswith("file://"),
            lambda route: (requested.append(route.request.url), route.abort()),
        )
        page.goto(page_path.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5", timeout=60_000)
        drawn = page.evaluate(
            "[...document.querySelectorAll('.js-plotly-plot')].map(p => p.querySelectorAll('.main-svg').length)"
        )
        titles = page.evaluate("[...document.querySelectorAll('.js-plotly-plot .gtitle')].map(t => t.textContent)")
        page.screenshot(path=tmp_path / "report.png", full_page=True)
        browser.close()
    assert len(drawn) == 5 and all(n >= 1 for n in drawn)  # funnel, uplift, cohorts, RFM migration, segments
    assert any(t.startswith("Funnel per campaign") for t in titles)
    assert any(t.startswith("Cohort retention") for t in titles) and any(t.startswith("RFM migration") for t in titles)
    assert requested == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_spring_audiences_hold_out_groups_are_measured(demo_run) -> None:
    """Each spring audience sent its treatment and held back its control on FROM_DAY; by DEMO_END the 3-day
    window (spring-2026's) has passed. Groups and conversions against pandas over the log and the raw orders."""
    db, raw, _ = demo_run
    log = table(db, "SELECT * FROM exports.deliveries")
    got = table(db, "SELECT * FROM analytics.campaign_uplift WHERE as_of = ?", [DEMO_END]).set_index("export_key")
    assert set(got.index) == {"spring_google_audience", "spring_meta_audience"}
    orders = raw["orders"]
    start = datetime.combine(FROM_DAY + timedelta(days=1), datetime.min.time())
    inside = orders[(orders.status == "completed") & (orders.ordered_at >= start)
                    & (orders.ordered_at <= start + timedelta(hours=72))]  # fmt: skip
    buyers = set(inside.customer_id)
    for key, row in got.iterrows():
        day = log[(log.export_key == key) & (pd.to_datetime(log.as_of).dt.date == FROM_DAY)]
        treated, control = set(day[day.status == "sent"].customer_id), set(day[day.status == "held_back"].customer_id)
        assert pd.Timestamp(row.first_day).date() == FROM_DAY and row.window_complete
        assert (row.treatment_n, row.control_n) == (len(treated), len(control)) and len(control) > 0
        assert row.treatment_conversion == pytest.approx(len(treated & buyers) / len(treated))
        assert row.control_conversion == pytest.approx(len(control & buyers) / len(control))


def test_the_analytics_assets_show_their_tables_in_the_ui(demo_run) -> None:
    """The materializations' metadata (what the asset pages show) hold the tables' own numbers."""
    db, _, _ = demo_run
    instance = demo_run[2]
    cohort = instance.get_latest_materialization_event(AssetKey("cohort_retention")).asset_materialization.metadata
    rfm = instance.get_latest_materialization_event(AssetKey("rfm_migration")).asset_materialization.metadata
    picture = instance.get_latest_materialization_event(AssetKey("segment_portrait")).asset_materialization.metadata
    retention = table(db, "SELECT * FROM analytics.cohort_retention")
    migration = table(db, "SELECT * FROM analytics.rfm_migration WHERE as_of = ?", [DEMO_END])
    portraits = table(db, "SELECT * FROM analytics.segment_portrait WHERE as_of = ? AND arm IS NULL", [DEMO_END])
    assert cohort["cohorts"].value == retention.cohort_month.nunique()
    assert "| cohort | customers | month 0 |" in cohort["retention"].value
    stayed = migration[migration.from_segment == migration.to_segment].customers.sum()
    assert rfm["customers"].value == migration.customers.sum()
    assert rfm["stayed_share"].value == pytest.approx(stayed / migration.customers.sum())
    largest = portraits.sort_values(["size", "segment_key"], ascending=[False, True]).iloc[0]
    assert picture["segments"].value == len(portraits)
    assert f"| {largest.segment_key} | {largest['size']} |" in picture["largest"].value
