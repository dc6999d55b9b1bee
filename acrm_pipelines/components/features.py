"""The dbt project (staging ▶ intermediate ▶ marts) as Dagster assets: dagster-dbt's DbtProjectComponent
(defs/features/defs.yaml: project, op name, pool, backfill policy, group), built per daily partition.

What it adds to the component: each `dbt build` is for the partition's as-of date and incremental when the
stored features allow it (features/incremental.py); the build is recorded only when dbt ran every staging
test in it; dbt runs as `acrm-dbt` (killed with the run) with the DuckDB file of the `duckdb` resource.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetCheckKey, AssetCheckResult, AssetExecutionContext, AssetKey, Output
from dagster_dbt import DbtCliResource, DbtProject, DbtProjectComponent, dbt_assets
from dagster_duckdb import DuckDBResource

from acrm_pipelines.features import incremental
from acrm_pipelines.features.dbt import FEATURES_MODEL, STAGING, dbt_build_args, dbt_environment, prune_targets
from acrm_pipelines.terminal import routed
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.partitions import daily_partitions

FEATURES_KEY = AssetKey(FEATURES_MODEL)


def staging_checks(assets_def: dg.AssetsDefinition, manifest_path: Path) -> list[AssetCheckKey]:
    """The asset checks of the dbt tests on the staging views (what incremental.RAW_TESTS selects)."""
    nodes = json.loads(manifest_path.read_text())["nodes"]
    return [
        spec.key
        for spec in assets_def.check_specs
        if nodes.get(spec.metadata.get("dagster_dbt/unique_id"), {}).get("original_file_path", "").startswith(STAGING)
    ]


def manifest_of(project: DbtProject) -> Path:
    if not project.manifest_path.exists():
        raise FileNotFoundError(
            f"{project.manifest_path} is missing: run `make setup` (it runs `dbt parse`) before loading the definitions"
        )
    return project.manifest_path


@dataclass
class FeaturesComponent(DbtProjectComponent):
    """The dbt project, one `dbt build` per daily partition (incremental when it can be)."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        """A model's key is its name (segments and exports read `customer_features`, `fct_orders`; sources keep
        their `meta.dagster.asset_key`, the raw_* assets); its description is its YAML's and its file, never
        dagster-dbt's fallback of the raw SQL."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        text = (props.get("description") or "").strip()
        where = props.get("original_file_path")
        source = f"dbt {props.get('resource_type', 'model')}" + (f" `{where}`" if where else "")
        spec = spec.replace_attributes(description=f"{text}\n\n{source}" if text else source)
        return spec.replace_attributes(key=AssetKey([props["name"]])) if props["resource_type"] == "model" else spec

    def build_defs_from_state(self, context: dg.ComponentLoadContext, state_path: Path | None) -> dg.Definitions:
        project = self._project_manager.get_project(state_path)
        op = self._get_op_spec(project)
        every_staging_check: list[AssetCheckKey] = []  # of the whole project (a run's assets_def may be a subset)

        @dbt_assets(
            manifest=manifest_of(project),
            project=project,
            select=self.select,
            exclude=self.exclude,
            selector=self.selector,
            name=op.name,
            partitions_def=daily_partitions(current().settings),
            backfill_policy=op.backfill_policy,
            pool=op.pool,
            dagster_dbt_translator=self.translator,
        )
        def _dbt(context: AssetExecutionContext, dbt: DbtCliResource, duckdb: DuckDBResource):
            yield from build_partition(context, dbt, duckdb, every_staging_check)

        every_staging_check.extend(staging_checks(_dbt, project.manifest_path))
        return dg.Definitions(assets=[_dbt])


def build_partition(
    context: AssetExecutionContext,
    dbt: DbtCliResource,
    duckdb: DuckDBResource,
    every_staging_check: list[AssetCheckKey],
) -> Iterator:
    as_of = date.fromisoformat(context.partition_key)
    # Incremental only when this run builds the affected customers and the features together.
    both = {AssetKey("int_customers_affected"), FEATURES_KEY} <= context.selected_asset_keys
    with duckdb.get_connection() as con:
        plan = incremental.plan(con, as_of) if both else incremental.Plan(as_of, reason="a partial build")
    context.log.info(plan.describe())
    with dbt_environment(duckdb.database):
        invocation = dbt.cli(dbt_build_args(plan), context=context)
    how = {"build": "incremental" if plan.since else "full", "built_from": str(plan.since or plan.reason)}
    evaluated: set[AssetCheckKey] = set()
    for event in routed(invocation.stream(), context.log.debug):  # dbt's log: the terminal with -v, else debug
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
