"""End to end through Dagster and dbt from a landing folder, and the `acrm` command's errors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest


def test_only_required_columns_run_end_to_end(tmp_path: Path, write_csv, make_settings, run_pipeline) -> None:
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["a"], ["b"], ["c"]])
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [
            ["1", "a", "2024-03-01 10:00:00", "100"],
            ["2", "a", "2024-03-09 23:59:59", "50"],
            ["3", "b", "2024-02-01", "10"],
            ["4", "b", "2024-03-10 00:00:00", "999"],  # the day after the as-of date: does not count
        ],
    )
    settings = make_settings(tmp_path, land)
    summary = run_pipeline(settings, "2024-03-09")
    assert summary.loaded == {
        "customers": 3,
        "products": 0,
        "orders": 4,
        "order_lines": 0,
        "events": 0,
        "messages": 0,
        "bonus_transactions": 0,
    }
    assert summary.customers_featured == 3
    assert summary.checks_failed == []
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        rows = con.execute(
            "SELECT customer_id, orders_count, total_amount::DOUBLE, recency_days, rfm_segment, bonus_balance::DOUBLE,"
            " emails_sent_30d, favourite_category, email FROM marts.customer_features ORDER BY 1"
        ).fetchall()
    assert rows == [
        ("a", 2, 150.0, 0, "champions", 0.0, 0, None, None),
        # n = 2 scored buyers: b is no better than itself only, k = 1 -> ceil(5 * 1 / 2) = 3 on R, F and M,
        # and r >= 3 and f >= 3 is "loyal"; a has k = 2 -> 5 everywhere -> "champions".
        ("b", 1, 10.0, 37, "loyal", 0.0, 0, None, None),
        ("c", 0, 0.0, None, "no_purchases", 0.0, 0, None, None),
    ]


def test_cli_run_reports_missing_column_with_file_name(tmp_path: Path, write_csv, acrm) -> None:
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["a"]])
    write_csv(land / "orders.csv", ["order_id", "customer_id", "ordered_at"], [["1", "a", "2024-01-01"]])
    env = {
        "ACRM_LANDING_DIR": str(land),
        "ACRM_DUCKDB_PATH": str(tmp_path / "x.duckdb"),
        "ACRM_START_DATE": "2024-01-01",
        "DAGSTER_HOME": str(tmp_path / "dh"),
    }
    (tmp_path / "dh").mkdir()
    done = acrm("run", "--as-of", "2024-01-02", env=env)
    assert done.returncode == 1
    assert "orders.csv: missing required column 'total_amount'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("as_of", ["2024-13-01", "2023-12-31"])
def test_cli_run_rejects_bad_or_out_of_range_dates(tmp_path: Path, as_of: str, acrm) -> None:
    env = {
        "ACRM_LANDING_DIR": str(tmp_path),
        "ACRM_DUCKDB_PATH": str(tmp_path / "x.duckdb"),
        "ACRM_START_DATE": "2024-01-01",
        "DAGSTER_HOME": str(tmp_path),
    }
    done = acrm("run", "--as-of", as_of, env=env)
    assert done.returncode == 1
    assert "--as-of" in done.stderr


def test_demo_data_with_the_example_segments_and_exports(
    demo_landing: Path, tmp_path: Path, make_settings, run_pipeline
) -> None:
    """The repo's own segments/ and exports/ run on generated data; every blocking check passes."""
    import csv

    settings = make_settings(tmp_path, demo_landing, with_exports=True)
    summary = run_pipeline(settings, "2026-11-20")
    assert summary.checks_failed == []
    assert {"spring_target", "offers", "birthday_soon"} <= set(summary.segments)
    assert set(summary.exports) == {
        "spring_email_file",
        "spring_google_audience",
        "spring_meta_audience",
        "birthday_bonus",
        "winback_codes",
        "offers_parquet",
        "cart_reminder_push",
    }
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        treatment = {
            c
            for (c,) in con.execute(
                "SELECT customer_id FROM segments.membership WHERE segment_key = 'spring_target' AND arm = 'treatment'"
            ).fetchall()
        }
        statuses = dict(
            con.execute(
                "SELECT status, count(*) FROM exports.deliveries WHERE export_key = 'spring_email_file' GROUP BY 1"
            ).fetchall()
        )
    with (settings.outbox_dir / "spring_email_file" / "2026-11-20.csv").open() as f:
        sent = {row["customer_id"] for row in csv.DictReader(f)}
    assert sent <= treatment and len(sent) == statuses["sent"]
    assert summary.exports["spring_email_file"]["sent"] == statuses["sent"]


def test_stale_raw_activity_warns(tmp_path: Path, write_csv, run_pipeline, make_settings) -> None:
    """The latest order is 9.5 days before the end of the as-of day: over the default 3 days, a warning."""
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["a"]])
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [["1", "a", "2024-03-01 12:00:00", "10"], ["2", "a", "2024-03-20 12:00:00", "10"]],
    )
    summary = run_pipeline(make_settings(tmp_path, land), "2024-03-10")
    assert summary.checks_failed == ["raw_orders:fresh_activity"]  # events and messages are empty: they pass
    assert summary.customers_featured == 1
