"""Every built day's features stay readable: a backfill, in any order and with re-runs, reads each day
back exactly as that day built alone on a fresh DuckDB file would have it, features and memberships."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
from dagster import AssetKey, AssetSelection, DagsterInstance

from acrm_pipelines.automation.runner import backfill
from acrm_pipelines.definitions import build_definitions
from acrm_pipelines.features.history import FeaturesNotBuilt, built_days, features_on
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.members import members_at
from acrm_pipelines.segments.validate import load_segments
from tests.cases.demo import DEMO_END

DAYS = [DEMO_END - timedelta(days=n) for n in (4, 3, 2, 1)]


def _features(con: duckdb.DuckDBPyConnection, relation: str) -> pd.DataFrame:
    return con.execute(f"SELECT * FROM {relation} ORDER BY customer_id").df()


def _dynamic_keys(settings) -> list[str]:
    segments = load_segments([settings.segments_dir], load_catalogue(settings.duckdb_path))
    return [k for k in segments.order if segments[k].type != "static"]


def test_backfilled_days_read_back_as_each_day_built_alone(
    demo_landing: Path, tmp_path: Path, make_settings, run_pipeline
) -> None:
    settings = make_settings(tmp_path / "backfilled", demo_landing)
    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()
    # The later days first, then the earlier ones (each splits the intervals written before it), then a
    # day again: every day must still read what it would alone.
    backfill(defs, settings, DAYS[2], DAYS[3], instance)
    backfill(defs, settings, DAYS[0], DAYS[1], instance)
    backfill(defs, settings, DAYS[2], DAYS[2], instance)
    keys = _dynamic_keys(settings)

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert built_days(con) == DAYS
        backfilled = {d: _features(con, f"marts.customer_features_on(DATE '{d}')") for d in DAYS}
        members = {(k, d): members_at(con, k, d) for k in keys for d in DAYS}
        stored = con.execute("SELECT count(*) FROM marts.customer_features_history").fetchone()[0]
        overlaps = con.execute(
            """SELECT count(*) FROM (
                SELECT valid_to, lead(valid_from) OVER (PARTITION BY customer_id ORDER BY valid_from) AS next_from
                FROM marts.customer_features_history)
            WHERE next_from < coalesce(valid_to, DATE '9999-12-31')"""
        ).fetchone()[0]
        # A day between built days reads the earlier one; before the first, nothing is known.
        assert features_on(con, DAYS[-1] + timedelta(days=3)).day == DAYS[-1]
        try:
            features_on(con, DAYS[0] - timedelta(days=1))
            raise AssertionError("a day before the first built day must not read")
        except FeaturesNotBuilt as err:
            assert f"built: 4 days from {DAYS[0]} to {DAYS[-1]}" in str(err)

    assert overlaps == 0
    for d in DAYS:
        alone = make_settings(tmp_path / f"alone-{d}", demo_landing)
        run_pipeline(alone, d.isoformat())
        with duckdb.connect(str(alone.duckdb_path), read_only=True) as con:
            expected = _features(con, "marts.customer_features")
            pd.testing.assert_frame_equal(backfilled[d], expected, obj=f"features of {d}")
            for k in keys:
                assert members[(k, d)] == members_at(con, k, d), f"{k} on {d}"
    # The days differ, so reading the wrong one would have failed above.
    assert not backfilled[DAYS[0]].equals(backfilled[DAYS[-1]])
    # Storage grows with what changed: far fewer rows than days × customers.
    customers = len(backfilled[DAYS[-1]])
    assert customers < stored < 0.6 * len(DAYS) * customers


def test_segments_of_a_past_day_read_that_days_features(
    demo_landing: Path, tmp_path: Path, make_settings, run_pipeline
) -> None:
    """After a later day was built, a segments-only run of an earlier partition evaluates on the earlier
    day's features (not the current table), and records the same membership as the whole run did."""
    settings = make_settings(tmp_path, demo_landing)
    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()
    early, late = DAYS[0], DAYS[-1]
    run_pipeline(settings, early.isoformat(), instance)
    keys = _dynamic_keys(settings)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        first = {k: members_at(con, k, early) for k in keys}
    run_pipeline(settings, late.isoformat(), instance)
    result = defs.resolve_job_def("acrm_daily").execute_in_process(
        partition_key=early.isoformat(), instance=instance, asset_selection=[AssetKey(["segment_set"])]
    )
    assert result.success
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert con.execute("SELECT max(as_of) FROM marts.customer_features").fetchone()[0] == late
        again = {k: members_at(con, k, early) for k in keys}
        late_members = {k: members_at(con, k, late) for k in keys}
    assert again == first
    assert any(first[k] != late_members[k] for k in keys)  # the days differ: the test can fail


def test_a_day_of_no_change_is_still_built(tmp_path: Path, write_csv, make_settings, run_pipeline) -> None:
    """A day on which nobody's features change adds no rows, yet is listed and reads back."""

    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id", "registered_at"], [["a", "2024-01-01"], ["b", "2024-01-01"]])
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [["1", "a", "2024-01-05 10:00:00", "50"]],
    )
    settings = make_settings(tmp_path, land)
    instance = DagsterInstance.ephemeral()
    for day in ("2024-06-01", "2024-06-03"):
        run_pipeline(settings, day, instance)
    run_pipeline(settings, "2024-06-02", instance)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert built_days(con) == [date(2024, 6, 1), date(2024, 6, 2), date(2024, 6, 3)]
        rows = con.execute(
            "SELECT customer_id, valid_from, valid_to FROM marts.customer_features_history ORDER BY ALL"
        ).fetchall()
        on_day = con.execute(
            "SELECT customer_id, as_of, recency_days, tenure_days FROM marts.customer_features_on(DATE '2024-06-02') "
            "ORDER BY customer_id"
        ).fetchall()
    assert rows == [("a", date(2024, 6, 1), None), ("b", date(2024, 6, 1), None)]
    # The calendar features are computed for the day read: 2024-01-05 + 149 days = 2024-06-02.
    assert on_day == [("a", date(2024, 6, 2), 149, 153), ("b", date(2024, 6, 2), None, 153)]


def _bonus(landing: Path, name: str, customer_id: str, points: int) -> None:
    """A bonus file appended to the landing, its one row dated long before every built day."""
    row = {"customer_id": customer_id, "occurred_at": "2023-03-03 08:00:00", "points": points, "reason": "late"}
    pd.DataFrame([row]).to_csv(landing / "bonus_transactions" / name, index=False)


def _build_of(instance: DagsterInstance) -> tuple[str, str]:
    event = instance.get_latest_materialization_event(AssetKey("customer_features"))
    return event.asset_materialization.metadata["build"].value, event.asset_materialization.metadata["built_from"].value


def _points(settings, customer_id: str, day: date) -> float:
    """A customer's bonus balance on `day`, summed from the loaded rows."""
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(
            "SELECT sum(points) FROM raw.bonus_transactions WHERE customer_id = ? AND occurred_at < ?",
            [customer_id, day + timedelta(days=1)],
        ).fetchone()[0]


def _quiet_customer(settings, day: date) -> str:
    """A customer without a completed order (no RFM score) and without a row of any kind in the 400 days
    before `day` and after it (so in no window whose start or end moves)."""
    since = day - timedelta(days=400)
    timed = (("orders", "ordered_at"), ("events", "occurred_at"), ("bonus_transactions", "occurred_at"))
    recent = " UNION ".join(f"SELECT customer_id FROM raw.{t} WHERE {c} >= DATE '{since}'" for t, c in timed)
    sent = " OR ".join(
        f"{c} >= DATE '{since}'" for c in ("sent_at", "opened_at", "clicked_at", "complained_at", "unsubscribed_at")
    )
    recent += f" UNION SELECT customer_id FROM raw.messages WHERE {sent}"
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(
            f"""SELECT customer_id FROM marts.customer_features
            WHERE orders_count = 0 AND registered_at < DATE '{since}' AND customer_id NOT IN ({recent})
            ORDER BY customer_id LIMIT 1"""
        ).fetchone()[0]


def _read_back(settings, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The day's features as the history reads them back, and as just built."""
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return _features(con, f"marts.customer_features_on(DATE '{day}')"), _features(con, "marts.customer_features")


def test_the_history_compares_every_customer_unless_it_holds_the_day_built_from(
    demo_landing: Path, tmp_path: Path, make_settings, run_pipeline
) -> None:
    """An incremental build hands the history only the customers that can have changed (the affected ones and
    those whose RFM scores moved) when the history's interval covering the day is the stored build's row for
    everyone else. Not so, and every customer is compared, when a day was built in between (a backfill after
    late rows) or the build it started from did not write the history (a refresh of the features alone)."""
    landing = tmp_path / "landing"
    shutil.copytree(demo_landing, landing)
    settings, instance = make_settings(tmp_path / "db", landing), DagsterInstance.ephemeral()
    early, late = DAYS[0], DAYS[-1]
    run_pipeline(settings, late.isoformat(), instance)
    before = _read_back(settings, late)[1].set_index("customer_id")["bonus_balance"]

    # Late rows, then a backfill of an earlier day (which reads them), then the later day again: incremental from
    # the backfilled day, whose stored row of C00000030 holds the late points while the history's day does not.
    _bonus(landing, "part-99001-late.csv", "C00000030", 5000)
    run_pipeline(settings, early.isoformat(), instance)
    run_pipeline(settings, late.isoformat(), instance)
    assert _build_of(instance) == ("incremental", str(early))
    history, built = _read_back(settings, late)
    pd.testing.assert_frame_equal(history, built, obj=f"history of {late} after a backfill")
    assert built.set_index("customer_id").loc["C00000030", "bonus_balance"] == _points(settings, "C00000030", late)
    assert _points(settings, "C00000030", late) == before["C00000030"] + 5000  # the late row counts

    # A late row loaded by a build of the features without their history (as a refresh job runs them), then the
    # next night: incremental from that build, whose row of a quiet customer (nothing the night recomputes them
    # for, no RFM score to move) the history does not hold.
    quiet = _quiet_customer(settings, late)
    _bonus(landing, "part-99002-late.csv", quiet, 700)
    facts = [AssetKey(f"fct_{t}") for t in ("orders", "order_lines", "events", "messages", "bonus_transactions")]
    defs = build_definitions(settings)
    selection = AssetSelection.assets(AssetKey("customer_features"), *facts).upstream()
    keys = selection.resolve(defs.resolve_asset_graph())
    assert AssetKey("customer_features_history") not in keys
    result = defs.resolve_job_def("acrm_daily").execute_in_process(
        partition_key=late.isoformat(), asset_selection=list(keys), instance=instance
    )
    assert result.success
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert con.execute("SELECT DISTINCT as_of, history FROM features.builds").fetchall() == [(late, False)]
    night = late + timedelta(days=1)
    run_pipeline(settings, night.isoformat(), instance)
    assert _build_of(instance) == ("incremental", str(late))
    history, built = _read_back(settings, night)
    pd.testing.assert_frame_equal(history, built, obj=f"history of {night} after the features alone")
    assert built.set_index("customer_id").loc[quiet, "bonus_balance"] == _points(settings, quiet, night)
    assert _points(settings, quiet, late) == before[quiet] + 700  # the late row counts
