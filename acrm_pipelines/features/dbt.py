"""How a partition's `dbt build` is invoked: its arguments, its environment, the `acrm-dbt` executable, and
the per-build target folders it leaves (the Dagster side: components/features.py)."""

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from acrm_pipelines.features import incremental

FEATURES_MODEL = "customer_features"
STAGING = "models/staging/"
# Each dbt build writes its own target folder (dagster-dbt's `dbt_features-<run>-<hash>`: manifest, compiled
# SQL, dbt.log; ~5 MB at this project's size), so a year of nights and backfills would keep gigabytes.
KEEP_TARGETS = 30


def dbt_build_args(plan: incremental.Plan) -> list[str]:
    """`dbt build` of one partition: its as-of date and, for an incremental build, what it builds from and
    the tests it need not run again."""
    args = ["build", "--vars", json.dumps(plan.dbt_vars())]
    return args + (["--exclude", " ".join(plan.excluded())] if plan.excluded() else [])  # one value: a union


def dbt_executable() -> str:
    """The venv's `acrm-dbt` (dbt, killed with the run that started it: features/dbt_child.py) beside this
    Python, so Dagster finds it without PATH set up; plain dbt where it is not installed."""
    for name in ("acrm-dbt", "dbt"):
        candidate = Path(sys.executable).parent / name
        if candidate.exists():
            return str(candidate)
    return shutil.which("dbt") or "dbt"


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` set in os.environ while the block runs (dbt reads them when it starts), then put back."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dbt_environment(database: str, engine: dict[str, str] | None = None) -> contextlib.AbstractContextManager[None]:
    """The variables dbt reads, set while dagster-dbt starts it (it copies os.environ then), and put back.
    dbt runs on DuckDB unless `engine` holds another engine's variables (spark.spark_env)."""
    return environment(
        {
            # profiles.yml reads the DuckDB file from this variable, and its target from ACRM_ENGINE: the
            # analytics models run on DuckDB whichever engine built the features.
            "ACRM_DUCKDB_PATH": database,
            "ACRM_ENGINE": "duckdb",
            # A job with some of the models (a refresh) runs only the tests whose every parent it builds: with
            # dbt's default (eager), a relationships test on fct_orders ran against a table that job never built.
            "DBT_INDIRECT_SELECTION": os.environ.get("DBT_INDIRECT_SELECTION") or "cautious",
        }
        | (engine or {})
    )


def prune_targets(
    target_dir: Path, keep: int = KEEP_TARGETS, idle_s: float = 3600.0, op: str = "dbt_features"
) -> list[Path]:
    """Remove the per-build target folders of the op `op` (dagster-dbt names them `<op>-<run>-<hash>`) beyond
    the newest `keep` (by last change), except any changed in
    the last `idle_s` seconds (another run may be writing it); returns what was removed. The latest
    builds' dbt.log and compiled SQL stay for debugging, and the project's own manifest.json is not touched."""
    changed: dict[Path, float] = {}
    for folder in target_dir.glob(f"{op}-*"):
        try:  # the folder's own time, or its dbt.log's, which dbt keeps writing to
            changed[folder] = max(p.stat().st_mtime for p in (folder, *folder.glob("dbt.log")))
        except OSError:  # removed meanwhile (another run's prune, `dbt clean`)
            continue
    newest = sorted(changed, key=changed.__getitem__, reverse=True)
    removed = [p for p in newest[keep:] if time.time() - changed[p] > idle_s]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed
