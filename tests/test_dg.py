"""`dg`, Dagster's project CLI, reads the project as the UI does: the components, then every definition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from acrm_pipelines.settings import REPO_ROOT

DG = Path(sys.executable).parent / "dg"


def dg(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(DG), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_dg_lists_the_segment_and_export_components_and_their_assets(tmp_path: Path) -> None:
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)}
    env |= {"ACRM_DUCKDB_PATH": str(tmp_path / "acrm.duckdb"), "DAGSTER_HOME": str(tmp_path)}
    tree = dg("list", "component-tree", env=env)
    assert tree.returncode == 0, tree.stderr[-2000:]
    assert "segments" in tree.stdout and "(SegmentsComponent)" in tree.stdout
    assert "exports" in tree.stdout and "(ExportsComponent)" in tree.stdout

    listed = dg("list", "defs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    keys = {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}
    # The repo's YAML, read here independently of the code under test: one asset per export document.
    documents = [d for p in (REPO_ROOT / "exports").glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    exports = {f"exports/{d['key']}" for d in documents}
    assert exports and exports <= keys
    assert {"segment_set", "customer_features", "raw_orders"} <= keys

    checked = dg("check", "defs", env=env)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr


def test_dg_check_defs_names_the_segment_file_at_fault(tmp_path: Path) -> None:
    bad = tmp_path / "segments"
    bad.mkdir()
    (bad / "broken.yaml").write_text("key: broken\ntitle: Broken\nrules: {field: no_such_field, op: '=', value: 1}\n")
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent), "ACRM_SEGMENTS_DIR": str(bad)}
    env |= {
        "ACRM_EXPORTS_DIR": str(tmp_path / "no_exports"),
        "ACRM_JOURNEYS_DIR": str(tmp_path / "no_journeys"),
        "DAGSTER_HOME": str(tmp_path),
    }
    checked = dg("check", "defs", env=env)
    assert checked.returncode != 0
    assert "broken.yaml" in checked.stdout + checked.stderr
    assert "no_such_field" in checked.stdout + checked.stderr
