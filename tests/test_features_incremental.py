"""A night's features built from the stored ones equal the same day built in full on a fresh file.

The incremental build recomputes only the customers a new row or the date change can affect
(features/incremental.py, int_customers_affected); here the rows that land after the first day include
late ones, dated long before it, which only the load record (rowid past the stored build's row count)
finds. Each build is compared, every column of every customer, with a full build of the same landing
folder on a fresh DuckDB file.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance

from acrm_pipelines.automation.runner import RunFailed
from acrm_pipelines.features import lines
from acrm_pipelines.features.incremental import plan
from acrm_pipelines.settings import REPO_ROOT
from tests.cases.demo import DEMO_END

DAY1 = DEMO_END - timedelta(days=2)
DAY2 = DAY1 + timedelta(days=1)
NIGHT_FILE = "part-99000-night.csv"


def _features(path: Path) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT * FROM marts.customer_features ORDER BY customer_id").df()


def _build_of(instance: DagsterInstance) -> tuple[str, str]:
    event = instance.get_latest_materialization_event(AssetKey("customer_features"))
    metadata = event.asset_materialization.metadata
    return metadata["build"].value, metadata["built_from"].value


def _land(landing: Path, table: str, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(landing / table / NIGHT_FILE, index=False)


def _late_rows(landing: Path) -> dict[str, str]:
    """A night's files whose rows are dated before DAY1 (found only as loaded after the stored build), and
    one of today. Returns what each row is about, by customer."""
    _land(
        landing,
        "customers",
        [{"customer_id": "CLATE0001", "first_name": "Late", "registered_at": "2025-06-01 10:00:00"}],
    )
    _land(
        landing,
        "orders",
        [
            {"order_id": "OLATE01", "customer_id": "C00000010", "ordered_at": "2025-01-05 12:00:00",
             "total_amount": 777.00, "status": "completed", "store_id": "S99", "channel": "web"},
            {"order_id": "OLATE02", "customer_id": "CLATE0001", "ordered_at": "2025-07-01 12:00:00",
             "total_amount": 50.00, "status": "completed", "store_id": "S01", "channel": "app"},
            {"order_id": "OTODAY1", "customer_id": "C00000011", "ordered_at": f"{DAY2} 09:00:00",
             "total_amount": 10.00, "status": "completed", "store_id": "S01", "channel": "app"},
        ],
    )  # fmt: skip
    _land(
        landing,
        "order_lines",
        [
            {"order_id": "OLATE01", "product_id": "P000001", "quantity": 1, "price": 777.00},
            {"order_id": "OLATE02", "product_id": "P000002", "quantity": 1, "price": 50.00},
            {"order_id": "OTODAY1", "product_id": "P000003", "quantity": 1, "price": 10.00},
        ],
    )
    _land(
        landing,
        "bonus_transactions",
        [{"customer_id": "C00000030", "occurred_at": "2024-01-01 08:00:00", "points": 5000, "reason": "late"}],
    )
    _land(
        landing,
        "events",
        [{"customer_id": "C00000050", "occurred_at": f"{DAY1} 08:00:00", "event_type": "site_visit", "channel": "web"}],
    )
    _land(
        landing,
        "messages",
        [{"message_id": "MLATE000001", "customer_id": "C00000040", "campaign_id": "late", "channel": "email",
          "sent_at": f"{DAY1 - timedelta(days=3)} 10:00:00", "opened_at": f"{DAY1} 11:00:00",
          "unsubscribed_at": f"{DAY1} 11:05:00"},
         {"message_id": "MLATE000002", "customer_id": "C00000010", "campaign_id": "late", "channel": "sms",
          "sent_at": "2025-01-05 11:00:00"}],
    )  # fmt: skip
    return {
        "C00000010": "a completed order a year before, its line, and the text an hour before it",
        "CLATE0001": "a customer registered before DAY1, and their order",
        "C00000030": "a bonus row of 2024",
        "C00000040": "an e-mail opened and unsubscribed on DAY1",
        "C00000050": "a visit on DAY1",
    }


def test_a_night_built_from_the_stored_features_equals_a_full_build(
    demo_landing: Path, tmp_path: Path, run_pipeline, make_settings
) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(demo_landing, landing)
    settings, instance = make_settings(tmp_path / "nightly", landing), DagsterInstance.ephemeral()
    run_pipeline(settings, DAY1.isoformat(), instance)
    assert _build_of(instance) == ("full", "no features are stored yet")
    day1 = _features(settings.duckdb_path).set_index("customer_id")

    late = _late_rows(landing)
    run_pipeline(settings, DAY2.isoformat(), instance)
    assert _build_of(instance) == ("incremental", str(DAY1))
    # The day changed, not the project: both of the night's dbt builds started from the last parse made for
    # this file (features/dbt.py build), so the features below are also those of a partial parse.
    assert _parses_of_last_run(instance) == {"dbt_features": "partial", "dbt_analytics": "partial"}
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        recomputed = {
            r[0] for r in con.execute("SELECT customer_id FROM intermediate.int_customers_affected").fetchall()
        }
    assert set(late) <= recomputed, set(late) - recomputed
    # The stored order lines had only the night's three lines to add (features/lines.py).
    assert _lines_plan_of_last_run(instance) == "stored order lines: 3 lines loaded since the last build are added"
    _assert_lines_joined(settings.duckdb_path)
    assert len(recomputed) < 0.5 * len(day1)  # most customers were kept, not recomputed

    fresh = make_settings(tmp_path / "full", landing)
    fresh_instance = DagsterInstance.ephemeral()
    run_pipeline(fresh, DAY2.isoformat(), fresh_instance)
    # Another file is another dbt profile: its first build parses in full, then keeps its own parse.
    assert _parses_of_last_run(fresh_instance) == {"dbt_features": "full", "dbt_analytics": "partial"}
    nightly, full = _features(settings.duckdb_path), _features(fresh.duckdb_path)
    pd.testing.assert_frame_equal(nightly, full, obj=f"features of {DAY2}")
    # The late rows changed what they are about (so a build that missed them would have differed above).
    changed = full.set_index("customer_id")
    assert changed.loc["C00000010", "total_amount"] > day1.loc["C00000010", "total_amount"]
    assert changed.loc["C00000030", "bonus_balance"] == day1.loc["C00000030", "bonus_balance"] + 5000
    assert changed.loc["C00000040", "unsubscribed_email"] and not day1.loc["C00000040", "unsubscribed_email"]
    assert "CLATE0001" in changed.index and "CLATE0001" not in day1.index
    # The analytics' incremental models too (analytics/incremental.py): from the stored rows, as in full.
    assert _analytics_build_of(instance) == ("incremental", "last build")
    assert _analytics_build_of(fresh_instance) == ("full", "no analytics build is recorded")
    _assert_same_analytics(settings.duckdb_path, fresh.duckdb_path)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        taken = con.execute("SELECT send_message_id FROM analytics.order_touches WHERE order_id = 'OLATE01'").fetchall()
    assert taken == [("MLATE000002",)]  # the late text took the late order

    # The same day again, with another appended file: incremental from itself, still equal to full.
    pd.DataFrame(
        [{"customer_id": "C00000060", "occurred_at": "2023-03-03 08:00:00", "points": -1, "reason": "late again"}]
    ).to_csv(landing / "bonus_transactions" / "part-99001-again.csv", index=False)
    run_pipeline(settings, DAY2.isoformat(), instance)
    assert _build_of(instance) == ("incremental", str(DAY2))
    again = make_settings(tmp_path / "full-again", landing)
    run_pipeline(again, DAY2.isoformat())
    pd.testing.assert_frame_equal(_features(settings.duckdb_path), _features(again.duckdb_path), obj="re-run")
    _assert_same_analytics(settings.duckdb_path, again.duckdb_path)
    assert all("not_run" not in m for m in _checks_of_last_run(instance, STAGING_CHECK))  # rows were added: run

    # And again with no new file (a backfill's later days): the staging tests are not run again, and say so.
    # Its record of the stored lines is put back to none of them, as a build that failed after adding lines
    # would leave it: they are all added again and replace themselves, none twice.
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("UPDATE features.lines SET rows = 0 WHERE table_name = 'order_lines'")
        total = con.execute("SELECT count(*) FROM raw.order_lines").fetchone()[0]
    run_pipeline(settings, DAY2.isoformat(), instance)
    added = f"stored order lines: {total:,} lines loaded since the last build are added"
    assert _lines_plan_of_last_run(instance) == added
    _assert_lines_joined(settings.duckdb_path)
    assert _build_of(instance) == ("incremental", str(DAY2))
    (skipped,) = _checks_of_last_run(instance, STAGING_CHECK)  # once: ours, not also dbt's
    assert skipped["not_run"].startswith(f"not run: no raw row was added since the build of {DAY2}")
    (ran,) = _checks_of_last_run(instance, MART_CHECK)
    assert "not_run" not in ran
    pd.testing.assert_frame_equal(_features(settings.duckdb_path), _features(again.duckdb_path), obj="no new rows")


def _lines_plan_of_last_run(instance: DagsterInstance) -> str:
    """How the latest run built the stored order lines, as its log says."""
    run_id = instance.get_runs(limit=1)[0].run_id
    (said,) = [e.user_message for e in instance.all_logs(run_id) if e.user_message.startswith("stored order lines")]
    return said


def _assert_lines_joined(path: Path) -> None:
    """The stored order lines are every raw line with its order and product, as pandas joins them."""
    with duckdb.connect(str(path), read_only=True) as con:
        stored = con.execute("SELECT * FROM intermediate.int_order_lines_all ORDER BY line_row").df()
        raw = con.execute("SELECT rowid AS line_row, * FROM raw.order_lines").df()
        orders = con.execute("SELECT order_id, customer_id, ordered_at, status, store_id, channel FROM raw.orders").df()
        products = con.execute("SELECT product_id, name AS product_name, category, brand FROM raw.products").df()
    expected = raw.merge(orders, on="order_id").merge(products, on="product_id", how="left")
    amounts = zip(expected.quantity, expected.price, strict=True)
    expected["line_amount"] = [None if price is None else int(quantity) * price for quantity, price in amounts]
    expected = expected[list(stored.columns)].sort_values("line_row", ignore_index=True)
    assert len(stored) == len(raw)  # every loaded line has its order (the loader's contract)
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)


def _analytics_build_of(instance: DagsterInstance) -> tuple[str, str]:
    event = instance.get_latest_materialization_event(AssetKey("order_touches"))
    metadata = event.asset_materialization.metadata
    return metadata["build"].value, metadata["built_from"].value


ANALYTICS = {
    "analytics.order_touches": "order_id",
    "analytics.campaign_reach": "campaign_id, channel, customer_id",
    "analytics.order_attribution": "order_id",
    f"analytics.campaign_funnel WHERE as_of = '{DAY2}'": "campaign_id, channel",
}


def _assert_same_analytics(built: Path, full: Path) -> None:
    """Every row of the incremental analytics models, and of the day's tables read from them, as in a full build."""
    for relation, order in ANALYTICS.items():
        frames = []
        for path in (built, full):
            with duckdb.connect(str(path), read_only=True) as con:
                frames.append(con.execute(f"SELECT * FROM {relation} ORDER BY {order}").df())
        assert len(frames[1]) > 0, relation
        pd.testing.assert_frame_equal(frames[0], frames[1], obj=relation)


def _parses_of_last_run(instance: DagsterInstance) -> dict[str, str]:
    """How each dbt build of the latest run parsed the project, from its dbt.log in dagster-dbt's target folder
    (`<op>-<run>-<hash>`): "partial" when dbt reused a saved parse, "full" when it said why it could not."""
    run_id = instance.get_runs(limit=1)[0].run_id
    out = {}
    for log in (REPO_ROOT / "dbt_project" / "target").glob(f"dbt_*-{run_id[:7]}-*/dbt.log"):
        text = log.read_text()
        out[log.parent.name.split("-")[0]] = "full" if "Unable to do partial parsing" in text else "partial"
    return out


STAGING_CHECK = AssetCheckKey(AssetKey("stg_crm__orders"), "unique_stg_crm__orders_order_id")
MART_CHECK = AssetCheckKey(AssetKey("customer_features"), "unique_customer_features_customer_id")


def _checks_of_last_run(instance: DagsterInstance, key: AssetCheckKey) -> list[dict]:
    """The metadata of each evaluation of `key` in the latest run (as plain values)."""
    run_id = instance.get_runs(limit=1)[0].run_id
    out = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.asset_check_key == key:
            assert evaluation.passed, key
            out.append({k: v.value for k, v in evaluation.metadata.items()})
    return out


def test_a_reloaded_table_or_an_earlier_day_makes_a_full_build(
    demo_landing: Path, tmp_path: Path, run_pipeline, make_settings
) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(demo_landing, landing)
    settings, instance = make_settings(tmp_path / "db", landing), DagsterInstance.ephemeral()
    run_pipeline(settings, DAY2.isoformat(), instance)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert plan(con, DAY1).reason == f"the stored features are of {DAY2}, a later day"
        assert plan(con, DAY2 + timedelta(days=1)).since == DAY2
        # The stored order lines are of no day: any day's build (a backfill's too) adds what was loaded since.
        assert lines.plan(con).rows == con.execute("SELECT count(*) FROM raw.order_lines").fetchone()[0]

    # A loaded file rewritten (an order's amount changed): the loader reloads the table in full.
    orders = landing / "orders" / "part-00000.csv"
    frame = pd.read_csv(orders, dtype=str, keep_default_na=False)
    frame.loc[0, "total_amount"] = "1.00"
    frame.to_csv(orders, index=False)
    run_pipeline(settings, (DAY2 + timedelta(days=1)).isoformat(), instance)
    assert _build_of(instance) == ("full", "raw.orders was reloaded in full since the stored build")
    reloaded = "stored order lines: a full build (raw.orders was reloaded in full since the stored build)"
    assert _lines_plan_of_last_run(instance) == reloaded
    _assert_lines_joined(settings.duckdb_path)
    with duckdb.connect(str(settings.duckdb_path)) as con:  # the model's code as another version recorded it
        con.execute("UPDATE features.lines SET code = 'another'")
        assert lines.plan(con).reason == "the model changed since the last build"
    fresh = make_settings(tmp_path / "fresh", landing)
    run_pipeline(fresh, (DAY2 + timedelta(days=1)).isoformat())
    pd.testing.assert_frame_equal(_features(settings.duckdb_path), _features(fresh.duckdb_path))


ORDERS_STATUS_CHECK = AssetCheckKey(
    AssetKey("stg_crm__orders"), "accepted_values_stg_crm__orders_status__completed__cancelled__returned"
)


def _evaluations(instance: DagsterInstance, key: AssetCheckKey) -> list[bool]:
    """Whether each evaluation of `key` in the latest run passed."""
    run_id = instance.get_runs(limit=1)[0].run_id
    return [
        entry.dagster_event.event_specific_data.passed
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if entry.dagster_event.event_specific_data.asset_check_key == key
    ]


def test_an_incremental_build_tests_the_raw_rows_appended_since_the_stored_build(
    demo_landing: Path, tmp_path: Path, run_pipeline, make_settings
) -> None:
    """The staging tests marked `loaded_after` (macros/test_scope.sql) read, in an incremental build, the rows
    of the keys appended since the stored build: an old row is not read again (it passed when it was built),
    and a new key that repeats an old one is still found."""
    landing = tmp_path / "landing"
    shutil.copytree(demo_landing, landing)
    settings, instance = make_settings(tmp_path / "db", landing), DagsterInstance.ephemeral()
    run_pipeline(settings, DAY1.isoformat(), instance)
    assert _evaluations(instance, ORDERS_STATUS_CHECK) == [True]
    # Behind the loader's back (it never edits a loaded row): an old order gets a status the test refuses.
    with duckdb.connect(str(settings.duckdb_path)) as con:
        (old,) = con.execute("SELECT order_id FROM raw.orders WHERE rowid = 0").fetchone()
        con.execute("UPDATE raw.orders SET status = 'bogus' WHERE order_id = ?", [old])
    _late_rows(landing)
    run_pipeline(settings, DAY2.isoformat(), instance)
    assert _build_of(instance) == ("incremental", str(DAY1))
    assert _evaluations(instance, ORDERS_STATUS_CHECK) == [True]  # run on the night's orders only
    assert _evaluations(instance, STAGING_CHECK) == [True]

    # An appended row that repeats that old order's id (again behind the loader's back): found.
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("INSERT INTO raw.orders SELECT * FROM raw.orders WHERE order_id = ?", [old])
    with pytest.raises(RunFailed):
        run_pipeline(settings, DAY2.isoformat(), instance)
    assert _evaluations(instance, STAGING_CHECK) == [False]
    # Both old rows are read now (the repeated key's), so the old bad status is found too.
    assert _evaluations(instance, ORDERS_STATUS_CHECK) == [False]


def test_a_build_that_left_out_the_staging_tests_is_not_built_upon(
    demo_landing: Path, tmp_path: Path, run_pipeline, make_settings
) -> None:
    """The next build tests only the raw rows added after the one it builds from, so it builds from one that
    ran the staging tests: the features alone materialized (as from the UI) are not recorded."""
    from acrm_pipelines.automation.jobs import DAILY_JOB
    from acrm_pipelines.definitions import build_definitions

    landing = tmp_path / "landing"
    shutil.copytree(demo_landing, landing)
    settings, instance = make_settings(tmp_path / "db", landing), DagsterInstance.ephemeral()
    run_pipeline(settings, DAY1.isoformat(), instance)
    _late_rows(landing)
    run_pipeline(settings, DAY2.isoformat(), instance)  # loads the late rows and tests them
    with duckdb.connect(str(settings.duckdb_path)) as con:  # a row the staging tests refuse, appended
        con.execute("INSERT INTO raw.orders SELECT * REPLACE ('bogus' AS status) FROM raw.orders LIMIT 1")
    job = build_definitions(settings).resolve_job_def(DAILY_JOB)
    selection = [AssetKey("int_customers_affected"), AssetKey("customer_features")]
    day3 = (DAY2 + timedelta(days=1)).isoformat()
    result = job.execute_in_process(partition_key=day3, asset_selection=selection, instance=instance)
    assert result.success and _evaluations(instance, ORDERS_STATUS_CHECK) == []  # not run
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert con.execute("SELECT DISTINCT as_of FROM features.builds").fetchall() == [(DAY2,)]
        assert plan(con, DAY2 + timedelta(days=2)).reason.startswith("the stored features (of ")
    with pytest.raises(RunFailed):  # the next build is full, so the row is tested
        run_pipeline(settings, (DAY2 + timedelta(days=2)).isoformat(), instance)
    assert _evaluations(instance, ORDERS_STATUS_CHECK) == [False]
