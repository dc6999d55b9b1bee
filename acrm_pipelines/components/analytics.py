"""The analytics dbt models (dbt_project/models/analytics/, schema `analytics`) as Dagster assets
(defs/analytics/defs.yaml): one `dbt build` of them per daily partition, after the features they read.

What the build is told besides the as-of date: each campaign's attribution window, from the exports' YAML
(`attribution_window`), and the default for the others (ACRM_ATTRIBUTION_WINDOW); docs/analytics.md.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
from dagster import AssetExecutionContext, AssetKey, MetadataValue, Output
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource

from acrm_pipelines.analytics import incremental, portrait, uplift
from acrm_pipelines.analytics.attribution import attribution_vars
from acrm_pipelines.components.dbt import Built, DailyDbtComponent
from acrm_pipelines.components.exports import export_key
from acrm_pipelines.components.segments import SET_KEY
from acrm_pipelines.components.specs import specs
from acrm_pipelines.features.dbt import build, finished
from acrm_pipelines.sql import table_exists
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
        selected = incremental.MODELS & context.selected_asset_keys
        with duckdb.get_connection() as con:
            plan = incremental.plan(con, windows)
            if selected:  # the stored rows are no build's until this one has finished
                incremental.forget(con)
        if selected:
            context.log.info(plan.describe())
        run_vars = {"as_of": context.partition_key, **windows, **plan.dbt_vars()}
        invocation = build(dbt, context, ["build"], duckdb.database, run_vars)
        how = {"build": "incremental" if plan.since is not None else "full", "built_from": plan.reason or "last build"}
        # The tables in the metadata are read once dbt has exited: while it builds it holds the file, and at 10M
        # customers the models after the funnel held it longer than the resource waits for a connection.
        held: list = []  # from the first output that needs them on, in order
        for event in routed(invocation.stream(), context.log.debug):  # dbt's log: the terminal with -v
            if isinstance(event, Output) and event.output_name in INCREMENTAL_OUTPUTS:
                event = event.with_metadata({**event.metadata, **how})
            if held or (isinstance(event, Output) and event.output_name in OUTPUTS):
                held.append(event)
            else:
                yield event
        if held:
            with duckdb.get_connection() as con:
                for event in held:
                    if isinstance(event, Output) and event.output_name in OUTPUTS:
                        extra = OUTPUTS[event.output_name](con, context.partition_key)
                        event = event.with_metadata({**event.metadata, **extra})
                    yield event
        if selected == incremental.MODELS:  # all built: the next build may start from them
            with duckdb.get_connection() as con:
                incremental.record(con, plan)
        finished(invocation, duckdb.database)


SHOWN = ("sent", "delivered", "opened", "clicked", "orders_after_send", "orders_after_click", "revenue_after_click")


def md_table(columns: Sequence[str], rows: Iterable[Sequence]) -> MetadataValue:
    """Rows as a markdown table for the asset's page (numbers with 3 decimals, empty for null)."""

    def cell(value) -> str:
        return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    head = "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|\n"
    return MetadataValue.md(head + "".join("| " + " | ".join(cell(v) for v in r) + " |\n" for r in rows))


def funnel_metadata(con: duckdb.DuckDBPyConnection, as_of: str) -> dict:
    """The day's funnel as a table in the asset's page, and each campaign's counts as numbers the UI plots
    over the partitions (`<campaign>.<channel>.<step>`)."""
    rows = con.execute(
        f"SELECT campaign_id, channel, {', '.join(SHOWN)}, click_rate FROM analytics.campaign_funnel "
        "WHERE as_of = ? ORDER BY campaign_id, channel",
        [as_of],
    ).fetchall()
    numbers = {
        f"{r[0]}.{r[1]}.{step}": MetadataValue.float(float(value or 0))
        for r in rows
        for step, value in zip(SHOWN, r[2:], strict=False)
    }
    table = md_table(["campaign", "channel", *SHOWN, "click_rate"], rows)
    return {"campaigns": MetadataValue.int(len(rows)), "funnel": table, **numbers}


def cohort_metadata(con: duckdb.DuckDBPyConnection, as_of: str) -> dict:
    """The latest 12 cohorts' shares in their first 7 months."""
    df = con.execute("SELECT * FROM analytics.cohort_retention WHERE as_of = ?", [as_of]).df()
    if df.empty:
        return {"cohorts": MetadataValue.int(0)}
    grid = df[df.months_since <= 6].pivot(index="cohort_month", columns="months_since", values="share")
    sizes = df.groupby("cohort_month").customers.first()
    latest = grid.sort_index().tail(12)
    rows = [[str(m)[:7], int(sizes[m]), *(None if v != v else float(v) for v in latest.loc[m])] for m in latest.index]
    table = md_table(["cohort", "customers", *(f"month {c}" for c in latest.columns)], rows)
    return {"cohorts": MetadataValue.int(len(sizes)), "retention": table}


def rfm_metadata(con: duckdb.DuckDBPyConnection, as_of: str) -> dict:
    """The migration matrix, and the share of customers who kept their segment (plotted over the days)."""
    df = con.execute("SELECT * FROM analytics.rfm_migration WHERE as_of = ?", [as_of]).df()
    if df.empty:
        return {"customers": MetadataValue.int(0)}
    grid = df.pivot_table(index="from_segment", columns="to_segment", values="customers", fill_value=0)
    rows = [[name, *(int(v) for v in grid.loc[name])] for name in grid.index]
    stayed = int(df[df.from_segment == df.to_segment].customers.sum())
    total = int(df.customers.sum())
    return {
        "customers": MetadataValue.int(total),
        "stayed_share": MetadataValue.float(stayed / total),
        "migration": md_table(["from \\ to", *grid.columns], rows),
    }


# The dbt models whose materialization carries a table of the day's results (and numbers the UI plots).
METADATA = {
    AssetKey("campaign_funnel"): funnel_metadata,
    AssetKey("cohort_retention"): cohort_metadata,
    AssetKey("rfm_migration"): rfm_metadata,
}
OUTPUTS = {key.to_python_identifier(): make for key, make in METADATA.items()}
INCREMENTAL_OUTPUTS = {key.to_python_identifier() for key in incremental.MODELS}  # with how each was built


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
    shown = ["export_key", "treatment_n", "control_n", "uplift", "uplift_ci_low", "uplift_ci_high", "p_value", "note"]
    numbers = {f"{r['export_key']}.uplift": MetadataValue.float(r["uplift"]) for r in rows if r["uplift"] is not None}
    table = md_table(shown, [[r[c] for c in shown] for r in rows])
    return {"exports": MetadataValue.int(len(rows)), "uplift": table, **numbers}


PORTRAIT_SHOWN = [
    "segment_key",
    "size",
    "share_of_base",
    "share_of_revenue_365d",
    "avg_check_365d",
    "entered",
    "exited",
]
PORTRAIT_ROWS = 30  # the largest segments in the asset's page; the table has every one


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
            rows = con.execute(
                f"SELECT {', '.join(PORTRAIT_SHOWN)} FROM {portrait.TABLE} WHERE as_of = ? AND arm IS NULL "
                "ORDER BY size DESC, segment_key",
                [as_of],
            ).fetchall()
        table = md_table(PORTRAIT_SHOWN, rows[:PORTRAIT_ROWS])
        return dg.MaterializeResult(metadata={"segments": MetadataValue.int(len(rows)), "largest": table})

    return segment_portrait
