"""The segment YAML folder (ACRM_SEGMENTS_DIR) as Dagster assets, produced by one subsettable multi-asset.

Evaluating the selected segments of a partition is one step: one wide scan and batched predicates
(evaluate.py), then one write of the history (history.py).

Dagster's bookkeeping costs ~26 ms per materialized asset key on its SQLite storage (bench/dagster_bookkeeping.py),
so one key per segment made 1,000 segments cost ~26 s a partition and 5,000 over two minutes, for an engine
that needs seconds. So (docs/architecture.md, "Segments and Dagster"):
- `segment_set` is every segment: one materialization a partition whose metadata has each segment's size
  as `<key>.size` (plotted over time by the UI) and a table of size, entered, exited and arms per segment;
  it depends on the feature marts the rules read.
- A segment has its own asset key `segments/<key>` (lineage, size metadata, checks) when something
  consumes it: an export reads it, it is refreshed every N hours, it has a size check — and so do the
  segments those are built from. Tens of keys, not thousands.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg
import yaml
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    multi_asset,
)
from dagster_duckdb import DuckDBResource

from acrm_pipelines.components.specs import specs
from acrm_pipelines.features.history import FeaturesNotBuilt, current_day, features_on
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.compile import explain_sql
from acrm_pipelines.segments.evaluate import Fixed, evaluate
from acrm_pipelines.segments.history import ensure_tables, fixed_membership, record
from acrm_pipelines.segments.members import evaluated_dates_of
from acrm_pipelines.segments.spark_child import evaluate_on_spark
from acrm_pipelines.segments.spec import AllGroup, AnyGroup, BehaviourCondition, NotGroup, Segment
from acrm_pipelines.segments.validate import SegmentSet
from acrm_pipelines.settings import Settings
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.partitions import DUCKDB_POOL, ONE_PARTITION_PER_RUN, daily_partitions

GROUP = "segments"
FACT_OF_SOURCE = {
    "purchase": ["fct_orders", "fct_order_lines"],
    "event": ["fct_events"],
    "message": ["fct_messages"],
    "bonus": ["fct_bonus_transactions"],
}


def segment_key(key: str) -> AssetKey:
    return AssetKey(["segments", key])


def _facts(cond) -> set[str]:
    if isinstance(cond, AllGroup):
        return set().union(*[_facts(c) for c in cond.all])
    if isinstance(cond, AnyGroup):
        return set().union(*[_facts(c) for c in cond.any])
    if isinstance(cond, NotGroup):
        return _facts(cond.not_)
    if isinstance(cond, BehaviourCondition):
        return set(FACT_OF_SOURCE[cond.source])
    return set()


def _reads(seg: Segment) -> list[AssetKey]:
    """The feature marts a segment's own rules and split read."""
    deps = []
    if seg.rules is not None or (seg.split is not None and seg.split.by_field):
        deps.append(AssetKey(["customer_features"]))
        deps += [AssetKey([f]) for f in sorted(_facts(seg.rules))] if seg.rules is not None else []
    return deps


SET_KEY = AssetKey(["segment_set"])
TABLE_SCHEMA = TableSchema(
    columns=[
        TableColumn("segment", "string"),
        TableColumn("file", "string"),
        TableColumn("size", "int"),
        TableColumn("entered", "int"),
        TableColumn("exited", "int"),
        TableColumn("arms", "int"),
        TableColumn("note", "string"),
    ]
)


def _spec(seg: Segment, file: str, definition: dict) -> AssetSpec:
    kind = "static" if seg.type == "static" else "dynamic"
    # The asset page shows the definition as written (comments aside); each materialization adds its SQL.
    rules = yaml.safe_dump(definition, sort_keys=False, allow_unicode=True).rstrip()
    title = seg.title or seg.description or f"segment {seg.key}"
    return AssetSpec(
        key=segment_key(seg.key),
        deps=[segment_key(r) for r in seg.refs] + _reads(seg),
        group_name=GROUP,
        description=f"{title}\n\nDefined in `{file}`:\n\n```yaml\n{rules}\n```",
        skippable=True,
        kinds={"duckdb"},
        tags={"acrm/segment_type": kind, "acrm/active": str(seg.active).lower()},
        metadata={"definition_file": file, "version": seg.version()},
    )


def _set_spec(segments: SegmentSet) -> AssetSpec:
    reads = sorted({key for k in segments.order for key in _reads(segments[k])}, key=lambda a: a.to_string())
    files = sorted({segments.definitions[k].file for k in segments.order})
    return AssetSpec(
        key=SET_KEY,
        deps=reads,
        group_name=GROUP,
        description=f"Every segment ({len(segments)} in {len(files)} files), evaluated together: each segment's "
        "size in the metadata as `<key>.size`, and a table of size, entered, exited and arms (docs/segments.md).",
        skippable=True,
        kinds={"duckdb"},
        metadata={"segments": MetadataValue.int(len(segments)), "definition_files": MetadataValue.json(files)},
    )


def _set_result(rows: list[dict], failed: dict[str, str]) -> MaterializeResult:
    metadata: dict = {
        "segments": MetadataValue.int(len(rows)),
        "failed": MetadataValue.int(len(failed)),
        "table": MetadataValue.table([TableRecord(r) for r in rows], schema=TABLE_SCHEMA),
    }
    for r in rows:
        metadata[f"{r['segment']}.size"] = MetadataValue.int(r["size"])
    return MaterializeResult(asset_key=SET_KEY, metadata=metadata)


def _frozen(seg: Segment, dates: list[date], as_of: date) -> date | None:
    """The stored date to read instead of evaluating: static segments after their first evaluation and
    inactive segments are not re-evaluated. An inactive segment never evaluated reads as empty."""
    if seg.active and (seg.type == "dynamic" or not dates):
        return None
    if not dates:
        return date.min
    return seg_day if (seg_day := max((d for d in dates if d <= as_of), default=None)) else dates[0]


SIZE_CHECK = "size_jump"
# A by_field split's arms are the field's values: beyond a few they are a column of customer data, not a
# summary (and 40,000 metadata entries a materialization), so only their count is shown then.
MAX_ARMS_SHOWN = 50


def size_ratio(size: int, previous: int) -> float:
    """How many times larger the larger of the two sizes is (an empty side counts as 1)."""
    return max(size, previous) / max(min(size, previous), 1)


def _size_check(key: str, seg: Segment, size: int, previous: tuple[str, int] | None) -> AssetCheckResult:
    limit = seg.size_alert.max_ratio
    if previous is None:
        return AssetCheckResult(
            asset_key=segment_key(key),
            check_name=SIZE_CHECK,
            passed=True,
            metadata={"size": MetadataValue.int(size), "note": "first evaluation"},
        )
    day, before = previous
    ratio = size_ratio(size, before)
    return AssetCheckResult(
        asset_key=segment_key(key),
        check_name=SIZE_CHECK,
        passed=ratio <= limit,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "size": MetadataValue.int(size),
            "previous_size": MetadataValue.int(before),
            "previous_evaluation": day,
            "ratio": MetadataValue.float(round(ratio, 3)),
            "max_ratio": MetadataValue.float(limit),
        },
    )


def _size_check_skipped(key: str, note: str) -> AssetCheckResult:
    """A selected size check of a segment that was not evaluated this run passes, saying why."""
    return AssetCheckResult(asset_key=segment_key(key), check_name=SIZE_CHECK, passed=True, metadata={"note": note})


def build_segment_assets(segments: SegmentSet, settings: Settings, keyed: Sequence[str] = ()):
    """The multi-asset: `segment_set` and an asset key for each of `keyed` (see components/specs.py, keyed_segments),
    partitioned by day and evaluated by the settings' engine."""
    partitions_def = daily_partitions(settings)
    on_spark = settings.engine == "spark"
    if not len(segments):
        return None
    keyed_set = set(keyed)
    specs = [_set_spec(segments)]
    specs += [
        _spec(segments[k], segments.definitions[k].file, segments.definitions[k].doc.data)
        for k in segments.order
        if k in keyed_set
    ]
    catalogue = load_catalogue()  # from dbt's manifest, for the SQL shown with each materialization
    check_specs = [
        AssetCheckSpec(
            SIZE_CHECK,
            asset=segment_key(k),
            description=f"size changes by at most "
            f"{segments[k].size_alert.max_ratio}× against the previous evaluation (warns)",
        )
        for k in segments.order
        if segments[k].size_alert is not None and k in keyed_set
    ]

    @multi_asset(
        name="segments",
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=ONE_PARTITION_PER_RUN,
        pool=DUCKDB_POOL,
        description="Evaluates the selected segments of a partition together (docs/segments.md).",
    )
    def _segments(context: AssetExecutionContext, duckdb: DuckDBResource):
        as_of = date.fromisoformat(context.partition_key)
        whole = SET_KEY in context.selected_asset_keys
        selected = [k for k in segments.order if whole or segment_key(k) in context.selected_asset_keys]
        needed = segments.closure(selected)
        with duckdb.get_connection() as con:
            if on_spark and (built := current_day(con)) != as_of:
                raise Failure(
                    f"on Spark, segments are evaluated on the features of the last build ({built or 'none yet'}), "
                    f"not those of {as_of}: materialize the features for {as_of} first"
                )
            try:  # a segments-only run of another day than the last features build reads that day's history
                features = features_on(con, as_of, exact=True)
            except FeaturesNotBuilt as err:
                raise Failure(f"{err} (materialize the features for this partition first)") from err
            ensure_tables(con)
            dates = evaluated_dates_of(con, needed)
            frozen = {k: day for k in needed if (day := _frozen(segments[k], dates[k], as_of)) is not None}
            fixed = {k: fixed_membership(con, k, day) if day != date.min else Fixed([]) for k, day in frozen.items()}
            if not on_spark:
                evaluation = evaluate(con, segments, as_of, keys=needed, fixed=fixed, features=features.relation)
        if on_spark:  # in a child with its own session, which reads the DuckDB file: let go of it until then
            evaluation = evaluate_on_spark(settings, segments, as_of, needed, fixed)
        with duckdb.get_connection() as con:
            to_record = [k for k in selected if k not in fixed and k not in evaluation.failed]
            versions = {k: segments[k].version() for k in to_record}
            recorded = record(con, evaluation, to_record, versions)
            checked = [
                k for k in to_record if AssetCheckKey(segment_key(k), SIZE_CHECK) in context.selected_asset_check_keys
            ]
            previous = {
                k: (
                    str(recorded[k].previous),
                    con.execute(
                        "SELECT size FROM segments.evaluations WHERE segment_key = ? AND as_of = ?",
                        [k, recorded[k].previous],
                    ).fetchone()[0],
                )
                for k in checked
                if recorded[k].previous is not None
            }
        context.log.info(
            f"{len(needed)} segments evaluated together for {as_of} "
            + ", ".join(f"{name} {secs:.2f}s" for name, secs in evaluation.timings.items())
        )
        rows: list[dict] = []
        for k in selected:
            seg = segments[k]
            own = k in keyed_set and segment_key(k) in context.selected_asset_keys
            file = segments.definitions[k].file
            if k in evaluation.failed:  # not materialized: its exports are skipped, the other segments go on
                where = f"{file}: {evaluation.failed[k]}"
                context.log.error(f"segment {k} could not be evaluated: {where}")
                yield AssetObservation(
                    asset_key=segment_key(k) if own else SET_KEY, metadata={"segment": k, "evaluation_error": where}
                )
                continue
            unchecked = (
                k not in checked and AssetCheckKey(segment_key(k), SIZE_CHECK) in context.selected_asset_check_keys
            )
            if not seg.active and k not in recorded:
                context.log.info(f"segment {k} is inactive: not re-evaluated")
                if own:  # its partition is not left missing; its exports run and send nothing (exports/run.py)
                    last = frozen[k]
                    yield MaterializeResult(
                        asset_key=segment_key(k),
                        metadata={
                            "status": "inactive: not re-evaluated",
                            "size": MetadataValue.int(evaluation.size(k)),  # its stored membership, as read
                            "last_evaluation": "never" if last == date.min else str(last),
                            "version": seg.version(),
                            "type": seg.type,
                        },
                    )
                if unchecked:
                    yield _size_check_skipped(k, "inactive: not evaluated")
                continue
            rec = recorded.get(k)
            arms = evaluation.arm_sizes(k)
            note = f"frozen since {dates[k][0]}" if rec is None else ""
            size, entered, exited = evaluation.size(k), rec.entered if rec else 0, rec.exited if rec else 0
            rows.append(
                {"segment": k, "file": file, "size": size, "entered": entered, "exited": exited}
                | {"arms": len(arms), "note": note}
            )
            if not own:
                continue
            metadata = {
                "size": MetadataValue.int(size),
                "entered": MetadataValue.int(entered),
                "exited": MetadataValue.int(exited),
                "version": seg.version(),
                "type": seg.type,
                "evaluated_with": MetadataValue.int(len(needed)),
                "sql": MetadataValue.md(f"```sql\n{explain_sql(k, segments, catalogue, as_of)}\n```"),
            }
            if rec is None:
                metadata["frozen_since"] = str(dates[k][0])
            if rec and rec.previous:
                metadata["previous_evaluation"] = str(rec.previous)
            if arms:
                metadata["arms_count"] = MetadataValue.int(len(arms))
            if arms and (seg.split is None or seg.split.by_field is None or len(arms) <= MAX_ARMS_SHOWN):
                metadata["arms"] = MetadataValue.json(arms)
                for arm, n in arms.items():
                    metadata[f"arm.{arm}"] = MetadataValue.int(n)
            yield MaterializeResult(asset_key=segment_key(k), metadata=metadata)
            if k in checked:
                yield _size_check(k, seg, evaluation.size(k), previous.get(k))
            elif unchecked:
                yield _size_check_skipped(k, "frozen: not re-evaluated")
        if whole:
            yield _set_result(rows, evaluation.failed)

    return _segments


@dataclass
class SegmentsComponent(dg.Component, dg.Resolvable):
    """Every segment of ACRM_SEGMENTS_DIR, evaluated per daily partition, with history and size checks."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        found = specs()
        assets = build_segment_assets(found.segments, current().settings, found.keyed)
        return dg.Definitions(assets=[assets] if assets else [])
