"""The Dagster definitions load with the expected assets, checks, partitions and schedule."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, DailyPartitionsDefinition

from acrm_pipelines.features.dbt import dbt_build_args, dbt_vars
from tests.conftest import make_settings


def test_dbt_args_carry_the_partition_date() -> None:
    assert dbt_vars("2025-03-01") == {"as_of": "2025-03-01"}
    assert dbt_build_args("2025-03-01") == ["build", "--vars", '{"as_of": "2025-03-01"}']


def test_definitions_have_the_raw_to_marts_graph(tmp_path: Path) -> None:
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
    checks = {c.name for c in graph.asset_check_keys}
    assert {f"gx_{t}" for t in ("customers", "orders", "order_lines")} <= checks
    assert "unique_customer_features_customer_id" in checks  # dbt tests arrive as asset checks
    schedule = defs.resolve_schedule_def("acrm_nightly")
    assert schedule.cron_schedule == "0 2 * * *"
    assert defs.resolve_job_def("acrm_daily").partitions_def is not None
