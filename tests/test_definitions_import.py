"""Loading the definitions (what the UI's code server, `dg` and every run do) changes nothing outside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from acrm_pipelines.settings import REPO_ROOT

IMPORT = """
import json, os
before = dict(os.environ)
import acrm_pipelines.definitions as d
assert d.defs.resolve_asset_graph().get_all_asset_keys()
after = dict(os.environ)
print(json.dumps(sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))))
"""

SKIP = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
# dbt's own folders in the repo: `make test` runs the tests on every core, and the dbt builds of other tests
# write their artifacts there while this one runs (loading the definitions starts no dbt).
BUSY = ("dbt_project/target/", "dbt_project/logs/")


def files(root: Path) -> set[str]:
    found = set()
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP]
        found.update(os.path.relpath(os.path.join(folder, n), root) for n in [*names, *dirs])
    return {f for f in found if not f.startswith(BUSY)}


def test_importing_the_definitions_sets_no_variable_and_creates_no_file(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    ours = ("ACRM_", "DAGSTER_", "DBT_", "GX_", "DO_NOT_TRACK", "TQDM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env |= {
        "HOME": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        "ACRM_DUCKDB_PATH": str(tmp_path / "not" / "yet" / "acrm.duckdb"),
        "ACRM_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    repo_before, tmp_before = files(REPO_ROOT), files(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", IMPORT], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert files(tmp_path) == tmp_before  # no DuckDB folder, nothing in HOME or the working folder
    assert files(REPO_ROOT) == repo_before  # no .dagster_home, no data/
