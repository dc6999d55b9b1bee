"""Segments as Dagster assets: one asset key per segment, all produced by one subsettable multi-asset.

Evaluating the selected segments of a partition is one step: one wide scan and batched predicates
(evaluate.py), then one write of the history (history.py). Each segment keeps its own key, lineage
(rules depend on the feature marts they read, composites on their inputs) and metadata (size,
entered, exited — numeric, so the UI plots them over time).
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

from datetime import date

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
    multi_asset,
)
from dagster_duckdb import DuckDBResource

from acrm_pipelines.automation.partitions import DUCKDB_POOL, ONE_PARTITION_PER_RUN
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.evaluate import Fixed, evaluate
from acrm_pipelines.segments.history import ensure_tables, evaluated_dates, fixed_membership, record
from acrm_pipelines.segments.spec import AllGroup, AnyGroup, BehaviourCondition, NotGroup, Segment
from acrm_pipelines.segments.validate import SegmentSet, load_segments
from acrm_pipelines.settings import REPO_ROOT, Settings

GROUP = "segments"
FACT_OF_SOURCE = {
    "purchase": ["fct_orders", "fct_order_lines"],
    "event": ["fct_events"],
    "message": ["fct_messages"],
    "bonus": ["fct_bonus_transactions"],
}


def segment_key(key: str) -> AssetKey:
    return AssetKey(["segments", key])


def load_segment_set(settings: Settings) -> SegmentSet:
    """The segments folder, validated (raises DefinitionErrors naming file, line and field)."""
    if not settings.segments_dir.exists():
        return SegmentSet()
    # The catalogue from the dbt YAML: loading definitions must not open the DuckDB file a run may be writing
    # (custom_* columns are then checked when the segments are evaluated).
    return load_segments([settings.segments_dir], load_catalogue(), root=REPO_ROOT)


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


def _deps(seg: Segment) -> list[AssetKey]:
    deps = [segment_key(r) for r in seg.refs]
    if seg.rules is not None or (seg.split is not None and seg.split.by_field):
        deps.append(AssetKey(["customer_features"]))
        deps += [AssetKey([f]) for f in sorted(_facts(seg.rules))] if seg.rules is not None else []
    return deps


def _spec(seg: Segment, file: str) -> AssetSpec:
    kind = "static" if seg.type == "static" else "dynamic"
    return AssetSpec(
        key=segment_key(seg.key),
        deps=_deps(seg),
        group_name=GROUP,
        description=seg.title or seg.description or f"segment {seg.key}",
        skippable=True,
        kinds={"duckdb"},
        tags={"acrm/segment_type": kind, "acrm/active": str(seg.active).lower()},
        metadata={"definition_file": file, "version": seg.version()},
    )


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


def build_segment_assets(segments: SegmentSet, partitions_def):
    if not len(segments):
        return None
    specs = [_spec(segments[k], segments.definitions[k].file) for k in segments.order]
    check_specs = [
        AssetCheckSpec(
            SIZE_CHECK,
            asset=segment_key(k),
            description=f"size changes by at most "
            f"{segments[k].size_alert.max_ratio}× against the previous evaluation (warns)",
        )
        for k in segments.order
        if segments[k].size_alert is not None
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
        selected = [k for k in segments.order if segment_key(k) in context.selected_asset_keys]
        needed = segments.closure(selected)
        with duckdb.get_connection() as con:
            built = con.execute("SELECT max(as_of) FROM marts.customer_features").fetchone()[0]
            if built != as_of:  # e.g. a segments-only run after another date's features were built
                raise Failure(
                    f"marts.customer_features is as of {built}, not {as_of}: materialize the features for "
                    f"{as_of} first (run the whole job for this partition)"
                )
            ensure_tables(con)
            dates = {k: evaluated_dates(con, k) for k in needed}
            frozen = {k: day for k in needed if (day := _frozen(segments[k], dates[k], as_of)) is not None}
            fixed = {k: fixed_membership(con, k, day) if day != date.min else Fixed([]) for k, day in frozen.items()}
            evaluation = evaluate(con, segments, as_of, keys=needed, fixed=fixed)
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
        for k in selected:
            seg = segments[k]
            if k in evaluation.failed:  # not materialized: its exports are skipped, the other segments go on
                where = f"{segments.definitions[k].file}: {evaluation.failed[k]}"
                context.log.error(f"segment {k} could not be evaluated: {where}")
                yield AssetObservation(asset_key=segment_key(k), metadata={"evaluation_error": where})
                continue
            unchecked = (
                k not in checked and AssetCheckKey(segment_key(k), SIZE_CHECK) in context.selected_asset_check_keys
            )
            if not seg.active and k not in recorded:
                context.log.info(f"segment {k} is inactive: not re-evaluated")
                if unchecked:
                    yield _size_check_skipped(k, "inactive: not evaluated")
                continue
            rec = recorded.get(k)
            metadata = {
                "size": MetadataValue.int(evaluation.size(k)),
                "entered": MetadataValue.int(rec.entered if rec else 0),
                "exited": MetadataValue.int(rec.exited if rec else 0),
                "version": seg.version(),
                "type": seg.type,
                "evaluated_with": MetadataValue.int(len(needed)),
            }
            if rec is None:
                metadata["frozen_since"] = str(dates[k][0])
            if rec and rec.previous:
                metadata["previous_evaluation"] = str(rec.previous)
            arms = evaluation.arm_sizes(k)
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

    return _segments
