"""The export YAML folder (ACRM_EXPORTS_DIR) as Dagster assets: one per export, downstream of its segment,
with a blocking check.

Each export is its own asset (`exports/<key>`) so that one failing destination does not stop the
others; the check `nothing_suppressed_delivered` recomputes, from the features and the segment's
arms, who must not have been sent, and fails (blocking what comes after) if any of them was.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

from dataclasses import dataclass
from datetime import date

import dagster as dg
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

from acrm_pipelines.components.segments import segment_key
from acrm_pipelines.components.specs import specs
from acrm_pipelines.exports.audience import LOG, suppressed_sent
from acrm_pipelines.exports.run import hold_export, not_sent_reason, run_export
from acrm_pipelines.exports.spec import Export
from acrm_pipelines.exports.validate import ExportSet
from acrm_pipelines.settings import Settings
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.partitions import DUCKDB_POOL, ONE_PARTITION_PER_RUN, daily_partitions

GROUP = "exports"


def export_key(key: str) -> AssetKey:
    return AssetKey(["exports", key])


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
        with duckdb.get_connection() as con:
            wrong = suppressed_sent(con, export, as_of)
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
    # An export without a segment is an action of journeys (docs/journeys.md): it has no audience of its own.
    active = [k for k in exports.keys if exports[k].active and exports[k].segment is not None]
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


@dataclass
class ExportsComponent(dg.Component, dg.Resolvable):
    """Every export of ACRM_EXPORTS_DIR, downstream of its segment, delivered exactly once per partition."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        settings = current().settings
        found = specs()
        assets, checks = build_exports(found.exports, settings, daily_partitions(settings), found.inactive)
        return dg.Definitions(assets=assets, asset_checks=checks)
