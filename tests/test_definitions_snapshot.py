"""The Dagster definitions, described as data and held against tests/snapshots/definitions.json.

A change to the asset graph (keys, lineage, groups, partitions, pools, backfill policies, checks, jobs,
schedules, sensors, resources) fails here until the snapshot is written again on purpose:
`ACRM_WRITE_SNAPSHOT=1 .venv/bin/pytest tests/test_definitions_snapshot.py`, and the diff reviewed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import Definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def describe(defs: Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitions": repr(node.partitions_def) if node.partitions_def else None,
            "backfill_policy": repr(node.backfill_policy) if node.backfill_policy else None,
            "pools": sorted(node.pools or []),
            "checks": sorted(c.name for c in node.check_keys),
            "kinds": sorted(node.kinds),
        }
    repo = defs.get_repository_def()
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "schedules": sorted([s.name, s.cron_schedule, s.job_name, str(s.default_status)] for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "resources": sorted(defs.resources or {}),
    }


def test_the_definitions_match_their_snapshot(tmp_path: Path, make_settings) -> None:
    from acrm_pipelines.definitions import build_definitions

    # The repo's own segments and exports, as the demo and the UI load them.
    found = describe(build_definitions(make_settings(tmp_path, tmp_path / "landing", with_exports=True)))
    if os.environ.get("ACRM_WRITE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert found.keys() == expected.keys()
    for part in expected:  # one part at a time, so a failure names what moved
        assert json.loads(json.dumps(found[part])) == expected[part], part
