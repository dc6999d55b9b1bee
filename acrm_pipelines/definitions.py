"""The one entry point Dagster loads (`dagster dev`, `dagster definitions validate`, `acrm run`)."""

from __future__ import annotations

from dagster import Definitions
from dagster_duckdb import DuckDBResource

from acrm_pipelines.automation.jobs import build_nightly_schedule, build_refresh, daily_job
from acrm_pipelines.automation.partitions import daily_partitions
from acrm_pipelines.automation.runs import acrm_dead_runs
from acrm_pipelines.automation.sensors import build_landing_sensor
from acrm_pipelines.exports.assets import build_exports, load_export_set
from acrm_pipelines.features.dbt import build_dbt_assets, dbt_resource
from acrm_pipelines.ingest.assets import raw_assets, raw_checks
from acrm_pipelines.segments.assets import build_segment_assets, keyed_segments, load_segment_set
from acrm_pipelines.settings import Settings, quiet_telemetry


def build_definitions(settings: Settings) -> Definitions:
    partitions = daily_partitions(settings)
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    # Invalid segment or export files stop loading here, with every error's file, line and field.
    segment_set = load_segment_set(settings)
    export_set = load_export_set(settings, segment_set)
    keyed = keyed_segments(segment_set, {export_set[k].segment.segment for k in export_set.keys})
    segments = build_segment_assets(segment_set, partitions, keyed)
    inactive = frozenset(k for k in segment_set.order if not segment_set[k].active)
    exports, export_checks = build_exports(export_set, settings, partitions, inactive)
    refresh_jobs, refresh_schedules = build_refresh(segment_set, keyed)
    return Definitions(
        assets=[
            *raw_assets(settings, partitions),
            build_dbt_assets(partitions),
            *([segments] if segments else []),
            *exports,
        ],
        asset_checks=[*raw_checks(settings, partitions), *export_checks],
        jobs=[daily_job, *refresh_jobs],
        schedules=[build_nightly_schedule(settings), *refresh_schedules],
        sensors=[build_landing_sensor(settings), acrm_dead_runs],
        resources={
            "duckdb": DuckDBResource(database=str(settings.duckdb_path), connection_config=settings.duckdb_config()),
            "dbt": dbt_resource(settings),
        },
    )


quiet_telemetry()
defs = build_definitions(Settings.from_env())
