"""The landing folder (ACRM_LANDING_DIR) as the raw_* assets: one per contract table, loaded into the DuckDB file.

The landing folder is a full snapshot, and point-in-time cuts happen downstream in dbt; so a table is
kept when its files (and its parents' loads) did not change since the last load (metadata `reused`: a
backfill of many days loads once), gets only its new files appended when that equals a full load
(`appended_files`), and is reloaded in full otherwise (`full_reload_reason`); ingest/incremental.py.
Each asset has a Great Expectations check over the table it holds.
"""

from dataclasses import dataclass
from datetime import date

import dagster as dg
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from dagster_duckdb import DuckDBResource

from acrm_pipelines.ingest.contract import TABLES, TableSpec
from acrm_pipelines.ingest.expectations import validate_loaded_table
from acrm_pipelines.ingest.incremental import load_table_if_changed
from acrm_pipelines.ingest.loader import LoadResult
from acrm_pipelines.segments.dates import cutoff
from acrm_pipelines.settings import Settings
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.partitions import DUCKDB_POOL, ONE_PARTITION_PER_RUN, daily_partitions

GROUP = "ingest"


def raw_key(table_name: str) -> str:
    return f"raw_{table_name}"


def load_metadata(result: LoadResult) -> dict:
    """Counts only: personal data never goes into run metadata."""
    reasons_md = "\n".join(f"| `{r}` | {n} |" for r, n in result.reasons.items()) or "| — | 0 |"
    metadata = {
        "rows_read": result.rows_read,
        "rows_loaded": result.rows_loaded,
        "rows_quarantined": result.rows_quarantined,
        "reused": MetadataValue.bool(result.reused),
        "files": MetadataValue.json(result.files),
        "quarantine_reasons": MetadataValue.md(f"| reason | rows |\n|---|---|\n{reasons_md}"),
        **{f"quarantined.{reason}": n for reason, n in result.reasons.items()},
    }
    if result.full_reason:
        metadata["full_reload_reason"] = MetadataValue.text(result.full_reason)
    for name in ("appended_files", "ignored_columns", "custom_columns", "rejected_columns", "skipped_files"):
        if value := getattr(result, name):  # shown only when there is something to show
            metadata[name] = MetadataValue.json(value)
    return metadata


def build_raw_asset(spec: TableSpec, settings: Settings, partitions_def) -> AssetsDefinition:
    parents = sorted({raw_key(parent) for _, parent, _ in spec.parents})

    @asset(
        name=raw_key(spec.name),
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=ONE_PARTITION_PER_RUN,
        deps=parents,
        kinds={"duckdb"},
        pool=DUCKDB_POOL,
        description=f"`raw.{spec.name}`: typed rows of the landing table `{spec.name}`; bad rows go to "
        "`raw.quarantine` with a reason (docs/input-contract.md).",
    )
    def _raw(context: AssetExecutionContext, duckdb: DuckDBResource) -> MaterializeResult:
        with duckdb.get_connection() as con:
            result = load_table_if_changed(con, spec, settings.landing_dir, settings.default_region)
        context.log.info(
            f"{spec.name}: "
            + ("files unchanged since the last load, kept it: " if result.reused else "")
            + (f"appended {len(result.appended_files)} new file(s): " if result.appended_files else "")
            + (f"reloaded in full ({result.full_reason}): " if result.full_reason else "")
            + f"read {result.rows_read}, loaded {result.rows_loaded}, "
            f"quarantined {result.rows_quarantined} from {len(result.files)} file(s)"
        )
        for rejected in result.rejected_columns:  # names only: header text, never a row's values
            context.log.warning(f"{spec.name}: column not loaded: {rejected}")
        return MaterializeResult(metadata=load_metadata(result))

    return _raw


def build_gx_check(spec: TableSpec, partitions_def):
    @asset_check(
        asset=raw_key(spec.name),
        name=f"gx_{spec.name}",
        pool=DUCKDB_POOL,
        description=f"Great Expectations suite for raw.{spec.name}: keys present, unique, amounts ≥ 0, "
        "known statuses, phones in E.164.",
        partitions_def=partitions_def,
    )
    def _check(duckdb: DuckDBResource) -> AssetCheckResult:
        with duckdb.get_connection() as con:
            validation = validate_loaded_table(con, spec)
        failed = [r for r in validation.results if not r["success"]]
        rows = "\n".join(
            f"| {r['expectation']} | {r['column']} | {'✅' if r['success'] else '❌'} | {r['unexpected_count']} |"
            for r in validation.results
        )
        return AssetCheckResult(
            passed=validation.success,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "rows_validated": validation.rows_validated,
                "sampled": validation.sampled,
                "reused": MetadataValue.bool(validation.reused),
                "expectations": len(validation.results),
                "failed_expectations": len(failed),
                "results": MetadataValue.md(f"| expectation | column | ok | unexpected |\n|---|---|---|---|\n{rows}"),
            },
        )

    return _check


# The time column whose latest value says how fresh a table's activity is.
ACTIVITY_TIME = {"orders": "ordered_at", "events": "occurred_at", "messages": "sent_at"}


def build_freshness_check(table_name: str, column: str, settings: Settings, partitions_def):
    @asset_check(
        asset=raw_key(table_name),
        name="fresh_activity",
        pool=DUCKDB_POOL,
        description=f"The latest {column} in raw.{table_name} is at most {settings.freshness_days} days before "
        "the end of the partition's day (ACRM_FRESHNESS_DAYS); warns otherwise. An empty table passes.",
        partitions_def=partitions_def,
    )
    def _check(context, duckdb: DuckDBResource) -> AssetCheckResult:
        as_of = date.fromisoformat(context.partition_key)
        end = cutoff(as_of)
        with duckdb.get_connection() as con:
            latest = con.execute(f"SELECT max({column}) FROM raw.{table_name} WHERE {column} < ?", [end]).fetchone()[0]
        if latest is None:
            return AssetCheckResult(passed=True, metadata={"note": "no rows before the end of the day"})
        lag = (end - latest).total_seconds() / 86_400
        return AssetCheckResult(
            passed=lag <= settings.freshness_days,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "latest": latest.isoformat(sep=" "),
                "lag_days": MetadataValue.float(round(lag, 2)),
                "max_lag_days": MetadataValue.int(settings.freshness_days),
            },
        )

    return _check


def raw_assets(settings: Settings, partitions_def) -> list[AssetsDefinition]:
    return [build_raw_asset(spec, settings, partitions_def) for spec in TABLES]


def raw_checks(settings: Settings, partitions_def) -> list:
    freshness = [build_freshness_check(t, c, settings, partitions_def) for t, c in ACTIVITY_TIME.items()]
    return [*[build_gx_check(spec, partitions_def) for spec in TABLES], *freshness]


@dataclass
class IngestComponent(dg.Component, dg.Resolvable):
    """Every table of the input contract, loaded from ACRM_LANDING_DIR per daily partition, with its checks."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        settings = current().settings
        partitions = daily_partitions(settings)
        return dg.Definitions(assets=raw_assets(settings, partitions), asset_checks=raw_checks(settings, partitions))
