"""Exports as Dagster assets: one asset per export, downstream of its segment, with a blocking check.

Each export is its own asset (`exports/<key>`) so that one failing destination does not stop the
others; the check `nothing_suppressed_delivered` recomputes, from the features and the segment's
arms, who must not have been sent, and fails (blocking what comes after) if any of them was.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

from datetime import date

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from dagster_duckdb import DuckDBResource

from acrm_pipelines.exports.audience import CHANNEL_RULES, LOG
from acrm_pipelines.exports.run import hold_export, not_sent_reason, run_export
from acrm_pipelines.exports.spec import Export
from acrm_pipelines.exports.validate import ExportSet, load_exports
from acrm_pipelines.segments.assets import segment_key
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.history import segment_members_sql
from acrm_pipelines.segments.validate import SegmentSet
from acrm_pipelines.settings import REPO_ROOT, Settings
from acrm_pipelines.wiring.partitions import DUCKDB_POOL, ONE_PARTITION_PER_RUN

GROUP = "exports"


def export_key(key: str) -> AssetKey:
    return AssetKey(["exports", key])


def load_export_set(settings: Settings, segments: SegmentSet) -> ExportSet:
    if not settings.exports_dir.exists():
        return ExportSet()
    # The catalogue from the dbt YAML: loading definitions must not open the DuckDB file a run may be writing.
    return load_exports([settings.exports_dir], segments, load_catalogue(), root=REPO_ROOT)


def build_export_asset(export: Export, file: str, settings: Settings, partitions_def, segment_active: bool = True):
    @asset(
        name=export.key,
        key_prefix=["exports"],
        deps=[segment_key(export.segment.segment)],
        partitions_def=partitions_def,
        backfill_policy=ONE_PARTITION_PER_RUN,
        group_name=GROUP,
        pool=DUCKDB_POOL,
        kinds={"duckdb"},
        description=export.title or f"{export.destination.type} export of segment {export.segment.segment}",
        metadata={
            "definition_file": file,
            "destination": export.destination.type,
            "campaign": export.campaign,
            "channel": export.channel,
            "mode": export.mode,
        },
    )
    def _export(context: AssetExecutionContext, duckdb: DuckDBResource) -> MaterializeResult:
        as_of = date.fromisoformat(context.partition_key)
        with duckdb.get_connection() as con:
            reason = not_sent_reason(con, export, as_of, dict(context.run.tags), segment_active)
            if reason:
                context.log.info(f"{export.key} for {as_of}: {reason}")
                result = hold_export(con, export, as_of, context.run_id, reason)
            else:
                result = run_export(con, export, as_of, settings.outbox_dir, context.run_id, progress=context.log.info)
        metadata: dict = {name: MetadataValue.int(n) for name, n in sorted(result.counts.items())}
        if reason:
            metadata["not_sent"] = reason
        metadata["location"] = result.location
        metadata["seconds"] = round(result.seconds, 2)
        return MaterializeResult(metadata=metadata)

    return _export


def suppressed_sent_sql(export: Export) -> str:
    """Customers logged as sent on the date who had no consent, opted out, or were in the hold-out arm."""
    consent, opt_outs = CHANNEL_RULES[export.channel]
    bad = ["f.customer_id IS NULL"]
    if consent:
        bad.append(f"NOT coalesce(f.{consent}, false)")
    bad += [f"coalesce(f.{c}, false)" for c in opt_outs]
    if export.hold_out_arm:
        bad.append("m.arm = ?")
    return f"""
        SELECT count(*) FROM {LOG}.deliveries d
        LEFT JOIN marts.customer_features f ON f.customer_id = d.customer_id
        LEFT JOIN ({segment_members_sql()}) m ON m.customer_id = d.customer_id
        WHERE d.export_key = ? AND d.as_of = ? AND d.status = 'sent' AND ({" OR ".join(bad)})"""


def build_export_check(export: Export, partitions_def):
    @asset_check(
        asset=export_key(export.key),
        name="nothing_suppressed_delivered",
        blocking=True,
        pool=DUCKDB_POOL,
        partitions_def=partitions_def,
        description="No customer without consent, opted out, complained or held back was delivered.",
    )
    def _check(context, duckdb: DuckDBResource) -> AssetCheckResult:
        as_of = date.fromisoformat(context.partition_key)
        params: list = [export.segment.segment, as_of, export.key, as_of]
        if export.hold_out_arm:
            params.append(export.hold_out_arm)
        with duckdb.get_connection() as con:
            wrong = con.execute(suppressed_sent_sql(export), params).fetchone()[0]
            sent = con.execute(
                f"SELECT count(*) FROM {LOG}.deliveries WHERE export_key = ? AND as_of = ? AND status = 'sent'",
                [export.key, as_of],
            ).fetchone()[0]
        return AssetCheckResult(
            passed=wrong == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"suppressed_but_sent": MetadataValue.int(wrong), "sent": MetadataValue.int(sent)},
        )

    return _check


def build_exports(
    exports: ExportSet, settings: Settings, partitions_def, inactive_segments: frozenset[str] = frozenset()
) -> tuple[list, list]:
    """An asset and a check per active export; one reading an inactive segment runs and sends nothing."""
    active = [k for k in exports.keys if exports[k].active]
    assets = [
        build_export_asset(
            exports[k],
            exports.definitions[k].doc.file,
            settings,
            partitions_def,
            segment_active=exports[k].segment.segment not in inactive_segments,
        )
        for k in active
    ]
    checks = [build_export_check(exports[k], partitions_def) for k in active]
    return assets, checks
