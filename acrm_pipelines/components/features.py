"""The features' dbt models (staging ▶ intermediate ▶ marts) as Dagster assets (defs/features/defs.yaml).

What it adds to a daily dbt component (components/dbt.py): each `dbt build` is incremental when the stored
features allow it (features/incremental.py), and is recorded only when dbt ran every staging test in it.
With ACRM_ENGINE=spark the same build runs on Spark (`acrm-dbt` hands the raw tables over first), always in
full, and the features are then taken back into the DuckDB file (docs/spark.md).
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
from dagster import AssetCheckKey, AssetCheckResult, AssetExecutionContext, AssetKey, Output
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource

from acrm_pipelines.components.dbt import Built, DailyDbtComponent
from acrm_pipelines.features import incremental, lines
from acrm_pipelines.features.dbt import FEATURES_MODEL, STAGING, build, dbt_build_args, finished
from acrm_pipelines.features.spark_build import duckdb_views, take_features
from acrm_pipelines.settings import Settings
from acrm_pipelines.spark import spark_env
from acrm_pipelines.terminal import routed

FEATURES_KEY = AssetKey(FEATURES_MODEL)
LINES_KEY = AssetKey(lines.MODEL)
HISTORY_KEYS = {AssetKey(f"{FEATURES_MODEL}_history"), AssetKey(f"{FEATURES_MODEL}_dates")}


@dataclass(frozen=True)
class Checks:
    """The dbt tests the incremental builds rely on, as asset checks of the whole asset."""

    staging: list[AssetCheckKey]  # on the staging views: what incremental.RAW_TESTS leaves out
    scoped: list[AssetCheckKey]  # `where: "loaded_after:…"` (macros/test_scope.sql): the next build tests less


def checks_of(assets_def: dg.AssetsDefinition, manifest_path: Path) -> Checks:
    nodes = json.loads(manifest_path.read_text())["nodes"]
    staging, scoped = [], []
    for spec in assets_def.check_specs:
        node = nodes.get(spec.metadata.get("dagster_dbt/unique_id"), {})
        if node.get("original_file_path", "").startswith(STAGING):
            staging.append(spec.key)
        if str((node.get("config") or {}).get("where") or "").startswith("loaded_after:"):
            scoped.append(spec.key)
    return Checks(staging, scoped)


@dataclass
class FeaturesComponent(DailyDbtComponent):
    """The dbt project's features (staging ▶ intermediate ▶ marts), one `dbt build` per daily partition
    (incremental when it can be)."""

    def build_partition(
        self, context: AssetExecutionContext, dbt: DbtCliResource, duckdb: DuckDBResource, built: Built
    ) -> Iterator:
        checks = checks_of(built.assets_def, built.project.manifest_path)
        yield from build_partition(context, dbt, duckdb, checks, built.load.settings)


def build_partition(
    context: AssetExecutionContext,
    dbt: DbtCliResource,
    duckdb: DuckDBResource,
    checks: Checks,
    settings: Settings,
) -> Iterator:
    as_of = date.fromisoformat(context.partition_key)
    on_spark = settings.engine == "spark"
    # Incremental only when this run builds the affected customers and the features together, on DuckDB.
    both = {AssetKey("int_customers_affected"), FEATURES_KEY} <= context.selected_asset_keys
    lines_plan = None  # on Spark, duckdb_views builds the stored order lines after
    if on_spark:  # every customer each day; the history model still adds only the day's changes
        plan = incremental.Plan(as_of, reason="the Spark engine builds in full")
    else:
        with duckdb.get_connection() as con:
            plan = incremental.plan(con, as_of) if both else incremental.Plan(as_of, reason="a partial build")
            lines_plan = lines.plan(con)
        context.log.info(lines_plan.describe())
    context.log.info(plan.describe())
    # On Spark, `acrm-dbt` hands the raw tables over and runs dbt beside the session (features/dbt_child.py).
    engine = spark_env(settings) if on_spark else None
    run_vars = plan.dbt_vars() | (lines_plan.dbt_vars() if lines_plan else {})
    invocation = build(dbt, context, dbt_build_args(plan), duckdb.database, run_vars, engine)
    how = {"build": "incremental" if plan.since else "full", "built_from": str(plan.since or plan.reason)}
    evaluated: set[AssetCheckKey] = set()
    lines_built = False
    for event in routed(invocation.stream(), context.log.debug):  # dbt's log: the terminal with -v, else debug
        if isinstance(event, Output) and event.output_name == FEATURES_KEY.to_python_identifier():
            event = event.with_metadata({**event.metadata, **how})
        if isinstance(event, Output) and event.output_name == LINES_KEY.to_python_identifier():
            lines_built = True
        if isinstance(event, AssetCheckResult):
            evaluated.add(AssetCheckKey(event.asset_key, event.check_name))
        yield event
    if plan.raw_unchanged:  # the staging tests were not run: their checks say why, and pass as they did
        note = f"not run: no raw row was added since the build of {plan.since}, which ran this test and passed"
        for key in checks.staging:
            if key in context.selected_asset_check_keys:
                yield AssetCheckResult(
                    asset_key=key.asset_key, check_name=key.name, passed=True, metadata={"not_run": note}
                )
    if FEATURES_KEY in context.selected_asset_keys and on_spark:  # Spark's build is the day's, whole
        with duckdb.get_connection() as con:
            taken = take_features(con, settings)
        duckdb_views(duckdb.database, as_of, settings.spark_dir / "dbt_duckdb_views")
        taken_rows = ", ".join(f"{table} {n:,} rows" for table, n in taken.items())
        context.log.info(f"features taken from Spark into the DuckDB file: {taken_rows}")
        finished(invocation, duckdb.database, engine)
        return
    if lines_plan and lines_built:  # dbt has finished: the file is free again
        with duckdb.get_connection() as con:
            lines.record(con, lines_plan)
    # The next build tests only the rows added after this one (macros/test_scope.sql) and may leave the
    # staging tests out: so it builds from this one only if dbt ran every scoped test here (all passed, or the
    # build would have failed), the staging ones excepted when no raw row was added since a build that ran them.
    needed = set(checks.scoped) - (set(checks.staging) if plan.raw_unchanged else set())
    if FEATURES_KEY in context.selected_asset_keys and not needed <= evaluated:
        context.log.info(
            f"features of {as_of} not recorded: the scoped tests did not all run, so the next build is a full one"
        )
    elif FEATURES_KEY in context.selected_asset_keys:  # dbt has finished: the file is free again
        with duckdb.get_connection() as con:
            # With its history, the next build may hand the history its changed customers alone.
            incremental.record(con, as_of, history=context.selected_asset_keys >= HISTORY_KEYS)
            if plan.since:
                context.log.info(f"features of {as_of}: {incremental.affected(con):,} customers recomputed")
    finished(invocation, duckdb.database, engine)
