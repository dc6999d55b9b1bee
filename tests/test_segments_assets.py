"""Segments as Dagster assets: keys, lineage, metadata, static and inactive segments, in real runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dagster import AssetKey, DagsterInstance

SEGMENTS = """\
key: buyers
rules: {field: orders_count, op: ">=", value: 1}
size_alert: {max_ratio: 1.4}
---
key: frozen_buyers
type: static
rules: {field: orders_count, op: ">=", value: 1}
size_alert: {max_ratio: 1.4}
---
key: paused
active: false
rules: {field: orders_count, op: ">=", value: 1}
size_alert: {max_ratio: 1.4}
---
key: frozen_or_paused
from: {union: [frozen_buyers, paused]}
---
key: recent_buyers
rules: {purchase: {}, within: 1d, count: {">=": 1}}
"""


def test_segment_assets_in_real_runs(tmp_path: Path, write_csv, run_pipeline, make_settings) -> None:
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["a"], ["b"], ["c"]])
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [
            ["1", "a", "2024-03-01 10:00:00", "10"],
            ["2", "b", "2024-03-09 23:59:59", "5"],
            ["3", "c", "2024-03-10 00:00:00", "7"],
        ],
    )
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "s.yaml").write_text(SEGMENTS)
    settings = dataclasses.replace(make_settings(tmp_path, land), segments_dir=tmp_path / "segments")

    from acrm_pipelines.definitions import build_definitions

    graph = build_definitions(settings).resolve_asset_graph()
    # Own keys for the segments with a size check (and what they are built from), not for the others;
    # the set reads every mart a rule reads.
    keys = {k.to_user_string() for k in graph.get_all_asset_keys() if k.path[0] in ("segment_set", "segments")}
    assert keys == {"segment_set", "segments/buyers", "segments/frozen_buyers", "segments/paused"}
    assert graph.get(AssetKey(["segments", "buyers"])).parent_keys == {AssetKey(["customer_features"])}
    reads = {AssetKey(["customer_features"]), AssetKey(["fct_orders"]), AssetKey(["fct_order_lines"])}
    assert graph.get(AssetKey(["segment_set"])).parent_keys == reads  # purchases: orders and their lines

    instance = DagsterInstance.ephemeral()
    day1 = run_pipeline(settings, "2024-03-09", instance)
    # size, entered, exited: the first evaluation enters everyone. `paused` was never evaluated: not run.
    assert day1.segments == {
        "buyers": (2, 2, 0),
        "frozen_buyers": (2, 2, 0),
        "frozen_or_paused": (2, 2, 0),
        "recent_buyers": (1, 1, 0),  # b at 23:59:59 of the as-of day
    }
    day2 = run_pipeline(settings, "2024-03-10", instance)
    assert day2.segments == {
        "buyers": (3, 1, 0),
        "frozen_buyers": (2, 0, 0),  # static: frozen at its first evaluation
        "frozen_or_paused": (2, 0, 0),
        "recent_buyers": (1, 1, 1),  # c in, b out
    }
    # buyers went from 2 to 3: 1.5× > 1.4 warns (a failed check of severity WARN); the first day passed.
    assert day1.checks_failed == []
    assert day2.checks_failed == ["segments/buyers:size_jump"]
    event = instance.get_latest_materialization_event(AssetKey(["segments", "frozen_buyers"]))
    metadata = event.asset_materialization.metadata
    assert metadata["frozen_since"].value == "2024-03-09"
    assert event.asset_materialization.partition == "2024-03-10"
    # `paused` (inactive, never evaluated) is recorded for every partition, so none is left missing, and says so;
    # not evaluated, it is in neither the run's summary nor the set's table.
    paused = instance.get_latest_materialization_event(AssetKey(["segments", "paused"])).asset_materialization
    assert {k: v.value for k, v in paused.metadata.items() if k in ("status", "size", "last_evaluation")} == {
        "status": "inactive: not re-evaluated",
        "size": 0,
        "last_evaluation": "never",
    }
    assert instance.get_materialized_partitions(AssetKey(["segments", "paused"])) == {"2024-03-09", "2024-03-10"}
    # The set: one materialization a partition with every evaluated segment in its table and `<key>.size`.
    table = instance.get_latest_materialization_event(AssetKey(["segment_set"])).asset_materialization.metadata
    rows = {r.data["segment"]: r.data for r in table["table"].value.records}
    assert set(rows) == {"buyers", "frozen_buyers", "frozen_or_paused", "recent_buyers"}
    assert (rows["recent_buyers"]["size"], rows["recent_buyers"]["entered"], rows["recent_buyers"]["exited"]) == (
        1,
        1,
        1,
    )
    assert rows["frozen_buyers"]["note"] == "frozen since 2024-03-09"
    assert table["frozen_or_paused.size"].value == 2 and table["segments"].value == 4


def test_segments_refuse_features_of_another_date(tmp_path: Path, write_csv, run_pipeline, make_settings) -> None:
    """A segments-only run for a date whose features are not the ones in the file fails, naming both dates."""
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["a"]])
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [["1", "a", "2024-03-01 10:00:00", "10"]],
    )
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "s.yaml").write_text("key: buyers\nrules: {field: orders_count, op: '>=', value: 1}\n")
    settings = dataclasses.replace(make_settings(tmp_path, land), segments_dir=tmp_path / "segments")
    from acrm_pipelines.definitions import build_definitions

    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()
    run_pipeline(settings, "2024-03-10", instance)
    job = defs.resolve_job_def("acrm_daily")
    result = job.execute_in_process(
        partition_key="2024-03-09",
        instance=instance,
        raise_on_error=False,
        asset_selection=[AssetKey(["segment_set"])],
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "the features of 2024-03-09 were not built (built: 2024-03-10)" in failure.event_specific_data.error.message
