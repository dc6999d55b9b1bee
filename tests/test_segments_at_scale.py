"""1,000 generated segments through Dagster in-process (the path of `acrm run`): what the UI reads.

One `segment_set` materialization a partition carries every segment (its table and `<key>.size`), the
segments an export reads keep their own asset key, and no other per-segment asset exists, so Dagster's
bookkeeping does not grow with the segment count (timed in bench/dagster_bookkeeping.py, not here).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance

from bench.segments import generate_segments
from tests.cases.demo import DEMO_END

N = 1000


def test_a_thousand_segments_in_one_materialization(
    tmp_path: Path, demo_landing: Path, run_pipeline, make_settings
) -> None:
    folder = tmp_path / "segments"
    folder.mkdir()
    generated = generate_segments(N, seed=3)
    (folder / "generated.yaml").write_text(yaml.safe_dump_all(generated, sort_keys=False))
    exports = tmp_path / "exports"
    exports.mkdir()
    consumed = generated[7]["key"]
    (exports / "e.yaml").write_text(
        f"key: to_file\nsegment: {consumed}\nchannel: email\ncampaign: c\ndestination: {{type: csv}}\n"
        "fields: {customer_id: customer_id}\n"
    )
    settings = dataclasses.replace(make_settings(tmp_path, demo_landing), segments_dir=folder, exports_dir=exports)
    instance = DagsterInstance.ephemeral()
    summary = run_pipeline(settings, DEMO_END.isoformat(), instance)

    from acrm_pipelines.definitions import build_definitions

    keys = build_definitions(settings).resolve_asset_graph().get_all_asset_keys()
    assert {k.to_user_string() for k in keys if k.path[0] in ("segment_set", "segments")} == {
        "segment_set",
        f"segments/{consumed}",
    }
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        stored = dict(con.execute("SELECT segment_key, size FROM segments.evaluations").fetchall())
    assert len(stored) == N
    metadata = instance.get_latest_materialization_event(AssetKey(["segment_set"])).asset_materialization.metadata
    rows = {r.data["segment"]: r.data["size"] for r in metadata["table"].value.records}
    assert rows == stored
    assert {k: metadata[f"{k}.size"].value for k in stored} == stored
    assert {k: size for k, (size, _, _) in summary.segments.items()} == stored
    own = instance.get_latest_materialization_event(AssetKey(["segments", consumed])).asset_materialization
    assert own.metadata["size"].value == stored[consumed]
    # Materializations of this run: the raw tables, the dbt models, the set, one segment, one export.
    run_id = summary.run_id
    events = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    segment_events = [
        e for e in events if e.event_log_entry.dagster_event.asset_key.path[0] in ("segment_set", "segments")
    ]
    assert len(segment_events) == 2
