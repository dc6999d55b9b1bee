"""The Dagster definitions load with the expected assets, checks, partitions and schedule."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from dagster import AssetKey, BackfillPolicy, DailyPartitionsDefinition

from acrm_pipelines.features.dbt import dbt_build_args
from acrm_pipelines.features.incremental import Plan


def test_dbt_args_carry_the_partition_date() -> None:
    full = Plan(date(2025, 3, 1), reason="no features are stored yet")
    assert dbt_build_args(full) == ["build"]  # the vars go in ACRM_DBT_VARS (features/dbt.py build)
    assert full.dbt_vars() == {"as_of": "2025-03-01"}
    since = Plan(date(2025, 3, 1), since=date(2025, 2, 28), rows={"orders": 7})
    assert since.dbt_vars() == {"as_of": "2025-03-01", "features_since": "2025-02-28", "features_rows": {"orders": 7}}
    assert dbt_build_args(since)[1:] == ["--exclude", "resource_type:unit_test"]
    # The stored build wrote the history too: dbt may hand the history the changed customers alone.
    with_history = Plan(date(2025, 3, 1), since=date(2025, 2, 28), rows={"orders": 7}, history=True)
    assert with_history.dbt_vars() == {**since.dbt_vars(), "features_history": True}
    same_rows = Plan(date(2025, 3, 1), since=date(2025, 2, 28), rows={"orders": 7}, raw_unchanged=True)
    assert dbt_build_args(same_rows)[1:] == [
        "--exclude",
        "resource_type:unit_test resource_type:test,path:models/staging",
    ]


def test_definitions_have_the_raw_to_marts_graph(tmp_path: Path, make_settings) -> None:
    from acrm_pipelines.definitions import build_definitions

    defs = build_definitions(make_settings(tmp_path, tmp_path / "landing"))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    raw = {
        f"raw_{t}"
        for t in ("customers", "products", "orders", "order_lines", "events", "messages", "bonus_transactions")
    }
    marts = {
        "customer_features",
        "fct_orders",
        "fct_order_lines",
        "fct_events",
        "fct_messages",
        "fct_bonus_transactions",
    }
    assert raw | marts <= keys
    # Lineage: the features mart sits downstream of the raw customers and orders.
    upstream = graph.get(AssetKey("customer_features")).parent_keys
    assert AssetKey("int_customers_registered") in upstream
    ancestors = graph.upstream_key_closure = set()
    frontier = [AssetKey("customer_features")]
    while frontier:
        for parent in graph.get(frontier.pop()).parent_keys:
            if parent not in ancestors:
                ancestors.add(parent)
                frontier.append(parent)
    assert {AssetKey("raw_customers"), AssetKey("raw_orders"), AssetKey("raw_messages")} <= ancestors
    # Every asset is partitioned by day from the configured start date.
    for key in graph.get_all_asset_keys():
        partitions = graph.get(key).partitions_def
        assert isinstance(partitions, DailyPartitionsDefinition), key
        assert partitions.start.date().isoformat() == "2019-01-01"
        # One partition per backfill run (dagster-dbt alone would run a whole range in one dbt build).
        assert graph.get(key).backfill_policy == BackfillPolicy.multi_run(1), key
    checks = {c.name for c in graph.asset_check_keys}
    assert {f"gx_{t}" for t in ("customers", "orders", "order_lines")} <= checks
    assert "unique_customer_features_customer_id" in checks  # dbt tests arrive as asset checks
    schedule = defs.resolve_schedule_def("acrm_nightly")
    assert schedule.cron_schedule == "0 2 * * *"
    assert defs.resolve_job_def("acrm_daily").partitions_def is not None


def test_nightly_runs_yesterday_and_refresh_runs_today(tmp_path: Path, make_settings) -> None:
    """Partitions reach today (for the intraday refresh); the nightly run is for the last complete day."""
    from dagster import build_schedule_context

    from acrm_pipelines.definitions import build_definitions

    defs = build_definitions(make_settings(tmp_path, tmp_path / "landing"))
    today = datetime.now(UTC).date()
    assert defs.resolve_job_def("acrm_daily").partitions_def.get_last_partition_key() == today.isoformat()

    repo = defs.get_repository_def()
    nightly = defs.resolve_schedule_def("acrm_nightly")
    at = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    request = nightly.evaluate_tick(
        build_schedule_context(scheduled_execution_time=at, repository_def=repo)
    ).run_requests[0]
    assert request.partition_key == "2026-11-25"

    # The example cart_abandoners_7d has `refresh: 4h`.
    refresh = defs.resolve_schedule_def("acrm_refresh_every_4h")
    assert refresh.cron_schedule == "0 */4 * * *"
    assert refresh.job_name == "acrm_refresh_4h"
    at = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    request = refresh.evaluate_tick(
        build_schedule_context(scheduled_execution_time=at, repository_def=repo)
    ).run_requests[0]
    assert request.partition_key == "2026-11-26"


def test_refresh_job_selects_the_marked_segment_what_it_reads_and_its_exports(tmp_path: Path, make_settings) -> None:
    from acrm_pipelines.definitions import build_definitions

    defs = build_definitions(make_settings(tmp_path, tmp_path / "landing", with_exports=True))
    job = defs.resolve_job_def("acrm_refresh_4h")
    selected = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    # The segment, its export, and what it reads: events and orders, through their dbt models.
    assert {"segments/cart_abandoners_7d", "exports/cart_reminder_push"} <= selected
    assert {"raw_events", "raw_orders", "fct_events", "fct_orders", "customer_features"} <= selected
    # Nothing else: no other segment, no other export.
    assert {k for k in selected if k.startswith(("segments/", "exports/"))} == {
        "segments/cart_abandoners_7d",
        "exports/cart_reminder_push",
    }


def test_every_duckdb_connection_gets_the_memory_limit(tmp_path: Path, monkeypatch, make_settings) -> None:
    """DuckDB's default (80 % of RAM) left no room for the segment engine at 10M customers."""
    import dataclasses

    import duckdb
    import yaml

    from acrm_pipelines.definitions import build_definitions
    from acrm_pipelines.settings import DBT_PROJECT_DIR, Settings

    monkeypatch.setenv("ACRM_DUCKDB_MEMORY_LIMIT", "3GB")
    settings = dataclasses.replace(
        make_settings(tmp_path, tmp_path / "landing"), duckdb_memory_limit=Settings.from_env().duckdb_memory_limit
    )
    resource = build_definitions(settings).resources["duckdb"]
    with resource.get_connection() as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "2.7 GiB"  # 3 GB = 2.79 GiB
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["acrm"]["outputs"]["duckdb"]
    assert "ACRM_DUCKDB_MEMORY_LIMIT" in profile["settings"]["memory_limit"]
    with duckdb.connect(str(tmp_path / "x.duckdb"), config=settings.duckdb_config()) as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "2.7 GiB"  # 3 GB = 2.79 GiB
