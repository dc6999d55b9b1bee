"""The analytics dbt models (dbt_project/models/analytics/, schema `analytics`) as Dagster assets
(defs/analytics/defs.yaml): one `dbt build` of them per daily partition, after the features they read.

What the build is told besides the as-of date: each campaign's attribution window, from the exports' YAML
(`attribution_window`), and the default for the others (ACRM_ATTRIBUTION_WINDOW); docs/analytics.md.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
from dagster import AssetExecutionContext, AssetKey, MetadataValue, Output
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource

from acrm_pipelines.analytics import portrait, uplift
from acrm_pipelines.analytics.attribution import attribution_vars
from acrm_pipelines.components.dbt import Built, DailyDbtComponent
from acrm_pipelines.components.exports import export_key
from acrm_pipelines.components.segments import SET_KEY
from acrm_pipelines.components.specs import specs
from acrm_pipelines.features.dbt import dbt_environment, prune_targets
from acrm_pipelines.features.history import table_exists
from acrm_pipelines.terminal import routed
from acrm_pipelines.wiring.load import Load, current
from acrm_pipelines.wiring.partitions import DUCKDB_POOL, ONE_PARTITION_PER_RUN, daily_partitions


@dataclass
class AnalyticsComponent(DailyDbtComponent):
    """Campaign results per daily partition: the funnel and the orders each campaign's messages took (dbt),
    and the hold-out uplift of each export (Python: its intervals come from statsmodels and scipy)."""

    def build_defs_from_state(self, context: dg.ComponentLoadContext, state_path: Path | None) -> dg.Definitions:
        dbt_defs = super().build_defs_from_state(context, state_path)
        load = current()
        python = [build_uplift_asset(load), build_portrait_asset(load)]
        return dg.Definitions.merge(dbt_defs, dg.Definitions(assets=python))

    def build_partition(
        self, context: AssetExecutionContext, dbt: DbtCliResource, duckdb: DuckDBResource, built: Built
    ) -> Iterator:
        windows = attribution_vars(specs(built.load).exports, built.load.settings.attribution_window)
        dbt_vars = {"as_of": context.partition_key, **windows}
        with dbt_environment(duckdb.database):
            invocation = dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context)
        for event in routed(invocation.stream(), context.log.debug):  # dbt's log: the terminal with -v
            if isinstance(event, Output) and event.output_name == FUNNEL.to_python_identifier():
                with duckdb.get_connection() as con:
                    event = event.with_metadata({**event.metadata, **funnel_metadata(con, context.partition_key)})
            yield event
        prune_targets(invocation.target_path.parent, op=context.op.name)


FUNNEL = AssetKey("campaign_funnel")
SHOWN = ("sent", "delivered", "opened", "clicked", "orders_after_send", "orders_after_click", "revenue_after_click")


def funnel_metadata(con: duckdb.DuckDBPyConnection, as_of: str) -> dict:
    """The day's funnel as a table in the asset's page, and each campaign's counts as numbers the UI plots
    over the partitions (`<campaign>.<channel>.<step>`)."""
    rows = con.execute(
        f"SELECT campaign_id, channel, {', '.join(SHOWN)}, click_rate FROM analytics.campaign_funnel "
        "WHERE as_of = ? ORDER BY campaign_id, channel",
        [as_of],
    ).fetchall()
    header = "| campaign | channel | " + " | ".join(SHOWN) + " | click_rate |\n" + "|---" * (len(SHOWN) + 3) + "|\n"
    lines = "".join(
        "| " + " | ".join("" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |\n"
        for r in rows
    )
    numbers = {
        f"{r[0]}.{r[1]}.{step}": MetadataValue.float(float(value or 0))
        for r in rows
        for step, value in zip(SHOWN, r[2:], strict=False)
    }
    return {"campaigns": MetadataValue.int(len(rows)), "funnel": MetadataValue.md(header + lines), **numbers}


UPLIFT = AssetKey("campaign_uplift")


def daily_asset(load: Load, key: AssetKey, deps: list[AssetKey], description: str):
    """An analytics asset computed in Python: by day, one partition a run, in the DuckDB pool."""
    return dg.asset(
        key=key,
        group_name="analytics",
        deps=deps,
        partitions_def=daily_partitions(load.settings),
        backfill_policy=ONE_PARTITION_PER_RUN,
        pool=DUCKDB_POOL,
        kinds={"duckdb", "python"},
        description=description,
    )


def build_uplift_asset(load: Load) -> dg.AssetsDefinition:
    found = specs(load)
    exported = [export_key(k) for k in found.exports.keys if found.exports[k].active]

    @daily_asset(
        load,
        UPLIFT,
        deps=[*exported, AssetKey("fct_orders")],
        description="For every export with a hold-out arm: sent against held back from its first such date, "
        "conversion and revenue per customer within the campaign's attribution window, with 95 % intervals "
        "(docs/analytics.md, Uplift). Table analytics.campaign_uplift.",
    )
    def campaign_uplift(context: AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
        as_of = date.fromisoformat(context.partition_key)
        attribution = attribution_vars(found.exports, load.settings.attribution_window)
        with duckdb.get_connection() as con:
            has_log = table_exists(con, "exports", "deliveries")
            rows = (
                uplift.measure(con, uplift.holdouts(found.exports, found.segments, attribution), as_of)
                if has_log
                else []
            )
            uplift.write(con, rows, as_of)
        return dg.MaterializeResult(metadata=uplift_metadata(rows))

    return campaign_uplift


def uplift_metadata(rows: list[dict]) -> dict:
    def show(v) -> str:
        return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    shown = ["export_key", "treatment_n", "control_n", "uplift", "uplift_ci_low", "uplift_ci_high", "p_value", "note"]
    table = "| " + " | ".join(shown) + " |\n" + "|---" * len(shown) + "|\n"
    table += "".join("| " + " | ".join(show(r[c]) for c in shown) + " |\n" for r in rows)
    numbers = {f"{r['export_key']}.uplift": MetadataValue.float(r["uplift"]) for r in rows if r["uplift"] is not None}
    return {"exports": MetadataValue.int(len(rows)), "uplift": MetadataValue.md(table), **numbers}


def build_portrait_asset(load: Load) -> dg.AssetsDefinition:
    found = specs(load)

    @daily_asset(
        load,
        AssetKey("segment_portrait"),
        deps=[*([SET_KEY] if found.segments.order else []), AssetKey("customer_features")],
        description="Per segment evaluated on the day, and per arm: size, share of the customer base and of the "
        "last 365 days' revenue, average check, orders per customer, entered, exited (docs/analytics.md). "
        "Table analytics.segment_portrait.",
    )
    def segment_portrait(context: AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
        as_of = date.fromisoformat(context.partition_key)
        with duckdb.get_connection() as con:
            if not table_exists(con, "segments", "evaluations"):
                return dg.MaterializeResult(metadata={"segments": MetadataValue.int(0)})
            portrait.portrait(con, as_of)
            (segments,) = con.execute(
                f"SELECT count(*) FROM {portrait.TABLE} WHERE as_of = ? AND arm IS NULL", [as_of]
            ).fetchone()
        return dg.MaterializeResult(metadata={"segments": MetadataValue.int(segments)})

    return segment_portrait
