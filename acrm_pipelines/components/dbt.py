"""dagster-dbt's DbtProjectComponent, per daily partition: what the features and the analytics components share.

The YAML (defs/<domain>/defs.yaml) names the project, the models (`select`/`exclude`), the op's name, pool
and backfill policy and the group; this class adds the daily partitions, the `duckdb` resource (dbt runs as
`acrm-dbt`, killed with its run, on that resource's file), a model's asset key being its name, and its
description; a subclass says how one partition is built (`build_partition`).
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext, AssetKey
from dagster.components import DefsStateConfig
from dagster_dbt import DbtCliResource, DbtProject, DbtProjectComponent, dbt_assets
from dagster_duckdb import DuckDBResource

from acrm_pipelines.wiring.load import Load, current
from acrm_pipelines.wiring.partitions import daily_partitions


def manifest_of(project: DbtProject) -> Path:
    if not project.manifest_path.exists():
        raise FileNotFoundError(
            f"{project.manifest_path} is missing: run `make setup` (it runs `dbt parse`) before loading the definitions"
        )
    return project.manifest_path


@dataclass
class DailyDbtComponent(DbtProjectComponent):
    """Some of the dbt project's models as assets partitioned by day; `build_partition` builds one day."""

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

    @property
    def defs_state_config(self) -> DefsStateConfig:
        """One state key per component (features and analytics share the project): by its op's name."""
        config = super().defs_state_config
        name = self.op.name if self.op and self.op.name else type(self).__name__
        return DefsStateConfig(
            key=f"{config.key}[{name}]", management_type=config.management_type, refresh_if_dev=config.refresh_if_dev
        )

    def build_defs_from_state(self, context: dg.ComponentLoadContext, state_path: Path | None) -> dg.Definitions:
        project = self._project_manager.get_project(state_path)
        op = self._get_op_spec(project)
        load = current()  # a run reads the settings and YAML the definitions were loaded with

        @dbt_assets(
            manifest=manifest_of(project),
            project=project,
            select=self.select,
            exclude=self.exclude,
            selector=self.selector,
            name=op.name,
            partitions_def=daily_partitions(load.settings),
            backfill_policy=op.backfill_policy,
            pool=op.pool,
            dagster_dbt_translator=self.translator,
        )
        def _dbt(context: AssetExecutionContext, dbt: DbtCliResource, duckdb: DuckDBResource):
            yield from self.build_partition(context, dbt, duckdb, Built(project, _dbt, load))

        return dg.Definitions(assets=[_dbt])

    def build_partition(
        self, context: AssetExecutionContext, dbt: DbtCliResource, duckdb: DuckDBResource, built: "Built"
    ) -> Iterator:
        raise NotImplementedError


@dataclass(frozen=True)
class Built:
    """What a partition's build may need to know of its definition: the project, the whole asset (a run's
    `context.assets_def` holds only what the run selected), and the load of the definitions (its settings)."""

    project: DbtProject
    assets_def: dg.AssetsDefinition
    load: Load
