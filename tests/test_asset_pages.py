"""What the Dagster UI's asset pages show: a segment's rules (and, per materialization, its SQL), dbt models
with their own descriptions and no raw SQL, and every segment's current size on the segment set's page."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import yaml
from dagster import AssetKey, DagsterInstance

from acrm_pipelines.definitions import build_definitions
from acrm_pipelines.segments.members import members_at
from acrm_pipelines.settings import DBT_PROJECT_DIR
from tests.cases.demo import DEMO_END


def _documents(folder: Path) -> dict[str, dict]:
    docs = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["key"]] = doc
    return docs


def _model_descriptions() -> dict[str, str]:
    found = {}
    for path in (DBT_PROJECT_DIR / "models").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            found[model["name"]] = (model.get("description") or "").strip()
    return found


def _same(a, b) -> bool:  # dates in the file are text in the page: compare as JSON with str()
    return json.dumps(a, default=str, sort_keys=True) == json.dumps(b, default=str, sort_keys=True)


def test_asset_descriptions(tmp_path: Path, demo_landing: Path, make_settings) -> None:
    settings = make_settings(tmp_path, demo_landing, with_exports=True)
    graph = build_definitions(settings).resolve_asset_graph()
    files = _documents(settings.segments_dir)
    keyed = [k for k in graph.get_all_asset_keys() if k.path[0] == "segments" and len(k.path) == 2]
    assert len(keyed) >= 5
    for key in keyed:
        description = graph.get(key).description
        block = description.split("```yaml\n", 1)[1].split("\n```", 1)[0]
        assert _same(yaml.safe_load(block), files[key.path[1]]), key
    models = _model_descriptions()
    dbt_keys = [k for k in graph.get_all_asset_keys() if k.path[-1] in models]
    assert len(dbt_keys) >= 10
    for key in dbt_keys:
        description = graph.get(key).description
        assert "Raw SQL" not in description and "select" not in description.lower(), key
        assert description.startswith(models[key.path[-1]]), key


def test_each_materialization_shows_the_sql_that_selects_its_members(
    tmp_path: Path, demo_landing: Path, make_settings, run_pipeline
) -> None:
    settings = make_settings(tmp_path, demo_landing, with_exports=True)
    instance = DagsterInstance.ephemeral()
    run_pipeline(settings, DEMO_END.isoformat(), instance)
    key = "spring_target"
    event = instance.get_latest_materialization_event(AssetKey(["segments", key]))
    metadata = event.asset_materialization.metadata
    sql = metadata["sql"].value.split("```sql\n", 1)[1].rsplit("\n```", 1)[0]
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        selected = sorted(r[0] for r in con.execute(f"SELECT customer_id FROM ({sql})").fetchall())
        members = sorted(c for c, _ in members_at(con, key, DEMO_END))
    assert selected == members and len(members) == metadata["size"].value > 0
    # The segment set's page: every segment's current size, in one table.
    table = instance.get_latest_materialization_event(AssetKey("segment_set")).asset_materialization.metadata
    sizes = {r.data["segment"]: r.data["size"] for r in table["table"].value.records}
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        expected = dict(
            con.execute("SELECT segment_key, size FROM segments.evaluations WHERE as_of = ?", [DEMO_END]).fetchall()
        )
    assert sizes == {k: v for k, v in expected.items() if k in sizes} and len(sizes) >= 15
