"""How a partition's `dbt build` is invoked: its arguments, its environment, the `acrm-dbt` executable, the
last parse it starts from, and the per-build target folders it leaves (the Dagster side: components/features.py
and components/analytics.py)."""

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt import DbtCliResource
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from packaging import version

from acrm_pipelines.features import incremental
from acrm_pipelines.settings import DBT_PROJECT_DIR

FEATURES_MODEL = "customer_features"
STAGING = "models/staging/"
# Each dbt build writes its own target folder (dagster-dbt's `dbt_features-<run>-<hash>`: manifest, compiled
# SQL, dbt.log; ~5 MB at this project's size), so a year of nights and backfills would keep gigabytes.
KEEP_TARGETS = 30
PARSE = "partial_parse.msgpack"  # dbt's saved parse of the project, in each target folder
PARSES = "parses"  # the last parse per DuckDB file and engine, under the project's target folder


class DbtCli(DbtCliResource):
    """dagster-dbt's dbt resource without the two things it does in Dagster's process before each build, which
    cost ~4 s a build (two builds a run) and give us nothing:

    - `dbt --version` in a child process, to learn dbt's version (a new resource each step, so each build):
      `dbt_executable` is this venv's dbt, whose version is that of the dbt-core installed here;
    - a dbt adapter opened in this process, used only by `fetch_row_counts`/`fetch_column_metadata`, which we
      do not call (our row counts and sizes are read from the DuckDB file by the components)."""

    @property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Any) -> None:  # type: ignore[override]
        return None


def dbt_build_args(plan: incremental.Plan) -> list[str]:
    """`dbt build` of one partition, leaving out, in an incremental build, the tests it need not run again. The
    as-of date and what the build starts from are its run vars (`plan.dbt_vars()`, given to `build`)."""
    return ["build"] + (["--exclude", " ".join(plan.excluded())] if plan.excluded() else [])  # one value: a union


def build(
    dbt: DbtCliResource,
    context: AssetExecutionContext,
    args: list[str],
    database: str,
    run_vars: dict[str, Any],
    engine: dict[str, str] | None = None,
) -> DbtCliInvocation:
    """Start `dbt <args>` for a partition on the DuckDB file `database` (on Spark when `engine` holds its
    variables), with the run's vars, in a new target folder that holds the last parse made for this file and
    engine. The vars reach dbt in ACRM_DBT_VARS, not `--vars`, which dbt takes for a change of project and
    answers with a full parse (~3.5 s here, each build); so every build after the first parses only the files
    that changed (dbt's partial parsing, which checks itself). Call `finished` after reading its events."""
    target = _new_target(dbt, context)
    saved = _saved_parse(target.parent, database, engine)
    try:
        target.mkdir(parents=True)
        shutil.copyfile(saved, target / PARSE)
    except OSError:  # none kept yet, or pruned meanwhile: dbt parses in full, as it would anyway
        pass
    with dbt_environment(database, engine, run_vars):
        return dbt.cli(args, context=context, target_path=target)


def finished(invocation: DbtCliInvocation, database: str, engine: dict[str, str] | None = None) -> None:
    """After a build: its parse is kept for the next build on the same file and engine, and the old target
    folders of its op are removed. The parse only saves time: failing to keep it fails nothing."""
    made = invocation.target_path / PARSE
    saved = _saved_parse(invocation.target_path.parent, database, engine)
    try:
        saved.parent.mkdir(exist_ok=True)
        partial = saved.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        shutil.copyfile(made, partial)
        partial.replace(saved)  # whole or not at all: another build may be reading the last one
    except OSError:
        pass
    prune_targets(saved.parent, op="*.msgpack")
    prune_targets(saved.parent, keep=0, op="*.tmp")  # copies a killed run left, an hour after
    prune_targets(invocation.target_path.parent, op=invocation.target_path.name.rsplit("-", 2)[0])


def _new_target(dbt: DbtCliResource, context: AssetExecutionContext) -> Path:
    """dagster-dbt's own naming (`<op>-<run>-<hash>` in the project's target folder), chosen here so that the
    last parse can be put in first."""
    root = Path(os.environ.get("DBT_TARGET_PATH", "target"))
    root = root if root.is_absolute() else Path(dbt.project_dir) / root
    return root / f"{context.op_execution_context.op.name}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"


def _saved_parse(target_dir: Path, database: str, engine: dict[str, str] | None) -> Path:
    """Where the last parse for this DuckDB file and engine is kept: dbt's parse depends on the profile (the
    file's path is in it), so one per file and engine; any other parse would only be parsed again in full.
    The project's files (names, sizes, times) are in the key too: after a change of the dbt code, the first
    build parses in full rather than trusting dbt's partial parse across the change."""
    name = (engine or {}).get("ACRM_ENGINE", "duckdb")
    digest = hashlib.sha256(f"{name}:{Path(database).resolve()}".encode())
    files = [*DBT_PROJECT_DIR.glob("*.yml")]
    for folder in ("models", "macros", "tests", "seeds", "snapshots", "analyses"):
        files += (DBT_PROJECT_DIR / folder).rglob("*")
    for path in sorted(files):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return target_dir / PARSES / f"{name}-{digest.hexdigest()[:16]}.msgpack"


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


def dbt_environment(
    database: str, engine: dict[str, str] | None = None, run_vars: dict[str, Any] | None = None
) -> contextlib.AbstractContextManager[None]:
    """The variables dbt reads, set while dagster-dbt starts it (it copies os.environ then), and put back.
    dbt runs on DuckDB unless `engine` holds another engine's variables (spark.spark_env). `run_vars` are the
    run's dbt vars (macros/as_of.sql run_var: the as-of date and the like)."""
    return environment(
        {
            "ACRM_DBT_VARS": json.dumps(run_vars or {}),
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
    """Remove the per-build target folders of the op `op` (dagster-dbt names them `<op>-<run>-<hash>`; or the
    files `op` matches) beyond the newest `keep` (by last change), except any changed in
    the last `idle_s` seconds (another run may be writing it); returns what was removed. The latest
    builds' dbt.log and compiled SQL stay for debugging, and the project's own manifest.json is not touched."""
    changed: dict[Path, float] = {}
    for folder in target_dir.glob(op if "*" in op else f"{op}-*"):
        try:  # the folder's own time, or its dbt.log's, which dbt keeps writing to
            changed[folder] = max(p.stat().st_mtime for p in (folder, *folder.glob("dbt.log")))
        except OSError:  # removed meanwhile (another run's prune, `dbt clean`)
            continue
    newest = sorted(changed, key=changed.__getitem__, reverse=True)
    removed = [p for p in newest[keep:] if time.time() - changed[p] > idle_s]
    for folder in removed:
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        else:
            folder.unlink(missing_ok=True)
    return removed
