"""The dbt project (staging ▶ intermediate ▶ marts) as Dagster assets, one dbt build per partition."""

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from dagster import AssetCheckKey, AssetCheckResult, AssetExecutionContext, AssetKey, Output
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_duckdb import DuckDBResource

from acrm_pipelines.features import incremental
from acrm_pipelines.settings import DBT_PROJECT_DIR
from acrm_pipelines.terminal import routed
from acrm_pipelines.wiring.partitions import DUCKDB_POOL, ONE_PARTITION_PER_RUN

GROUP = "features"
FEATURES_KEY = AssetKey("customer_features")
STAGING = "models/staging/"
# Each dbt build writes its own target folder (dagster-dbt's `dbt_features-<run>-<hash>`: manifest, compiled
# SQL, dbt.log; ~5 MB at this project's size), so a year of nights and backfills would keep gigabytes.
KEEP_TARGETS = 30

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_build_args(plan: incremental.Plan) -> list[str]:
    """`dbt build` of one partition: its as-of date and, for an incremental build, what it builds from and
    the tests it need not run again."""
    args = ["build", "--vars", json.dumps(plan.dbt_vars())]
    return args + (["--exclude", " ".join(plan.excluded())] if plan.excluded() else [])  # one value: a union


def staging_checks(assets_def) -> list[AssetCheckKey]:
    """The asset checks of the dbt tests on the staging views (what RAW_TESTS selects)."""
    nodes = json.loads(manifest_path().read_text())["nodes"]
    return [
        spec.key
        for spec in assets_def.check_specs
        if nodes.get(spec.metadata.get("dagster_dbt/unique_id"), {}).get("original_file_path", "").startswith(STAGING)
    ]


def dbt_executable() -> str:
    """The venv's `acrm-dbt` (dbt, killed with the run that started it: features/dbt_child.py) beside this
    Python, so Dagster finds it without PATH set up; plain dbt where it is not installed."""
    for name in ("acrm-dbt", "dbt"):
        candidate = Path(sys.executable).parent / name
        if candidate.exists():
            return str(candidate)
    return shutil.which("dbt") or "dbt"


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())


@contextmanager
def dbt_environment(database: str) -> Iterator[None]:
    """The variables dbt reads, set while dagster-dbt starts it (it copies os.environ then), and put back."""
    values = {
        # profiles.yml reads the DuckDB file from this variable.
        "ACRM_DUCKDB_PATH": database,
        # A job with some of the models (a refresh) runs only the tests whose every parent it builds: with dbt's
        # default (eager), a relationships test on fct_orders ran against a table that job never built.
        "DBT_INDIRECT_SELECTION": os.environ.get("DBT_INDIRECT_SELECTION") or "cautious",
    }
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


class AcrmDbtTranslator(DagsterDbtTranslator):
    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        """The model's own description (its YAML); never dagster-dbt's fallback of the raw SQL."""
        text = (dbt_resource_props.get("description") or "").strip()
        where = dbt_resource_props.get("original_file_path")
        source = f"dbt {dbt_resource_props.get('resource_type', 'model')}" + (f" `{where}`" if where else "")
        return f"{text}\n\n{source}" if text else source

    def get_asset_spec(self, manifest: dict[str, Any], unique_id: str, project: DbtProject | None):
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest.get("nodes", {}).get(unique_id)
        if node is not None and node.get("resource_type") == "model":
            return spec.replace_attributes(key=AssetKey([node["name"]]), group_name=GROUP)
        return spec


def prune_targets(target_dir: Path, keep: int = KEEP_TARGETS, idle_s: float = 3600.0) -> list[Path]:
    """Remove the per-build target folders beyond the newest `keep` (by last change), except any changed in
    the last `idle_s` seconds (another run may be writing it); returns what was removed. The latest
    builds' dbt.log and compiled SQL stay for debugging, and the project's own manifest.json is not touched."""
    changed: dict[Path, float] = {}
    for folder in target_dir.glob("dbt_features-*"):
        try:  # the folder's own time, or its dbt.log's, which dbt keeps writing to
            changed[folder] = max(p.stat().st_mtime for p in (folder, *folder.glob("dbt.log")))
        except OSError:  # removed meanwhile (another run's prune, `dbt clean`)
            continue
    newest = sorted(changed, key=changed.__getitem__, reverse=True)
    removed = [p for p in newest[keep:] if time.time() - changed[p] > idle_s]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def manifest_path() -> Path:
    path = dbt_project.manifest_path
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run `make setup` (it runs `dbt parse`) before loading the definitions"
        )
    return path


def build_dbt_assets(partitions_def):
    every_staging_check: list[AssetCheckKey] = []  # of the whole project (a run's assets_def may be a subset)

    @dbt_assets(
        manifest=manifest_path(),
        project=dbt_project,
        partitions_def=partitions_def,
        backfill_policy=ONE_PARTITION_PER_RUN,
        dagster_dbt_translator=AcrmDbtTranslator(),
        name="dbt_features",
        pool=DUCKDB_POOL,
    )
    def dbt_features(context: AssetExecutionContext, dbt: DbtCliResource, duckdb: DuckDBResource):
        as_of = date.fromisoformat(context.partition_key)
        # Incremental only when this run builds the affected customers and the features together.
        both = {AssetKey("int_customers_affected"), FEATURES_KEY} <= context.selected_asset_keys
        with duckdb.get_connection() as con:
            plan = incremental.plan(con, as_of) if both else incremental.Plan(as_of, reason="a partial build")
        context.log.info(plan.describe())
        with dbt_environment(duckdb.database):
            invocation = dbt.cli(dbt_build_args(plan), context=context)
        events = invocation.stream()
        how = {"build": "incremental" if plan.since else "full", "built_from": str(plan.since or plan.reason)}
        evaluated: set[AssetCheckKey] = set()
        for event in routed(events, context.log.debug):  # dbt's log: the terminal with -v, else the run's debug log
            if isinstance(event, Output) and event.output_name == FEATURES_KEY.to_python_identifier():
                event = event.with_metadata({**event.metadata, **how})
            if isinstance(event, AssetCheckResult):
                evaluated.add(AssetCheckKey(event.asset_key, event.check_name))
            yield event
        if plan.raw_unchanged:  # the staging tests were not run: their checks say why, and pass as they did
            note = f"not run: no raw row was added since the build of {plan.since}, which ran this test and passed"
            for key in every_staging_check:
                if key in context.selected_asset_check_keys:
                    yield AssetCheckResult(
                        asset_key=key.asset_key, check_name=key.name, passed=True, metadata={"not_run": note}
                    )
        # The next build tests only the raw rows added after this one (macros/test_scope.sql) and may leave
        # the staging tests out: so it builds from this one only if dbt ran them here (all passed, or the build
        # would have failed), or no raw row was added since a build that did.
        tested = plan.raw_unchanged or set(every_staging_check) <= evaluated
        if FEATURES_KEY in context.selected_asset_keys and not tested:
            context.log.info(
                f"features of {as_of} not recorded: the staging tests did not run, so the next build is a full one"
            )
        elif FEATURES_KEY in context.selected_asset_keys:  # dbt has finished: the file is free again
            with duckdb.get_connection() as con:
                incremental.record(con, as_of)
                if plan.since:
                    context.log.info(f"features of {as_of}: {incremental.affected(con):,} customers recomputed")
        prune_targets(invocation.target_path.parent)

    every_staging_check.extend(staging_checks(dbt_features))
    return dbt_features
