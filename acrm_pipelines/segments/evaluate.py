"""Evaluate many segments for one as-of date together, as bitsets over one row per customer.

1. `_acrm_rows` (columns.py): one row per customer in the history's index order, with the features
   the rules read; behaviour aggregates are computed once per fact mart for all segments.
2. Every distinct leaf condition is evaluated once (atoms.py) into a bitset; groups, set operations,
   priorities and splits are bit operations in numpy.

Measured before choosing (docs/benchmarks.md): at 1M customers and 1,000 segments, one query per
segment took ~141 s and one scan with 1,000 FILTER aggregates > 50 s; predicates evaluated by DuckDB
in batches of 100 boolean columns took 6 s at 1M and 31 s at 10M, numpy comparisons a few seconds.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from acrm_pipelines.features.history import feature_columns
from acrm_pipelines.segments.atoms import Atoms, Plan
from acrm_pipelines.segments.catalogue import Catalogue, kind_of
from acrm_pipelines.segments.columns import aggregate_columns, build_rows, drop_rows, rows_column
from acrm_pipelines.segments.compile import FEATURES, WIDE, CompileError, Compiler, Target, bucket, field_arm
from acrm_pipelines.segments.validate import SegmentSet


@dataclass
class Evaluation:
    """Membership of every evaluated segment as packed bits over the rows of `ids`.

    Rows are in the order of the history's stable customer index (`row_index`, -1 for customers the
    index does not know yet, which come last by customer_id), so that day-to-day diffs line up.
    """

    as_of: date
    ids: pa.Array
    row_index: np.ndarray
    bits: dict[str, np.ndarray] = field(default_factory=dict)
    arm_names: dict[str, list[str]] = field(default_factory=dict)
    arm_codes: dict[str, np.ndarray] = field(default_factory=dict)  # int32 per row, -1 = not a member
    timings: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # segments that could not be evaluated, and why

    @functools.cached_property
    def customer_ids(self) -> np.ndarray:
        """The ids as Python strings, made only when asked (10M of them take seconds and gigabytes)."""
        return np.asarray(self.ids.to_numpy(zero_copy_only=False), dtype=object)

    @property
    def n(self) -> int:
        return len(self.row_index)

    def mask(self, key: str) -> np.ndarray:
        return np.unpackbits(self.bits[key], count=self.n).view(bool)

    def size(self, key: str) -> int:
        return int(np.bitwise_count(self.bits[key]).sum())

    def members(self, key: str) -> list[str]:
        return sorted(self.customer_ids[self.mask(key)].tolist())

    def arms(self, key: str) -> dict[str, str]:
        if key not in self.arm_codes:
            return {}
        codes = self.arm_codes[key]
        names = np.array(self.arm_names[key], dtype=object)
        rows = np.flatnonzero(codes >= 0)
        return dict(zip(self.customer_ids[rows].tolist(), names[codes[rows]].tolist(), strict=True))

    def arm_sizes(self, key: str) -> dict[str, int]:
        if key not in self.arm_codes:
            return {}
        counts = np.bincount(self.arm_codes[key][self.arm_codes[key] >= 0], minlength=len(self.arm_names[key]))
        return dict(zip(self.arm_names[key], counts.tolist(), strict=True))


@dataclass
class Fixed:
    """A membership that is not re-evaluated (a frozen static segment, an inactive one)."""

    customer_ids: list[str]
    arms: list[str | None] | None = None


def connection_catalogue(con: duckdb.DuckDBPyConnection) -> Catalogue:
    """The catalogue as the DuckDB file has it (every column, custom_* included, with real types)."""
    columns = feature_columns(con)
    if not columns:
        raise RuntimeError("marts.customer_features is missing: build the features before the segments")
    # custom_* columns this landing folder lacks still compile (they read as null), as validation allowed.
    return Catalogue({name: kind_of(t) for name, t in columns.items()}, custom_known=False)


def _pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.astype(bool, copy=False))


@dataclass
class Planned:
    """What to evaluate for a day: the segments in order, each one's rule plan, and what they read."""

    order: list[str]  # the segments to evaluate (those that failed to plan left out), dependencies first
    comp: Compiler
    atoms: Atoms
    plans: dict[str, Plan]
    missing: frozenset[str]  # custom_* columns this landing folder lacks (they read as null)
    failed: dict[str, str]


def plan_segments(
    segments: SegmentSet,
    catalogue: Catalogue,
    as_of: date,
    keys: Sequence[str] | None,
    fixed: dict[str, Fixed],
    con: duckdb.DuckDBPyConnection | None = None,
    target: Target | None = None,
) -> Planned:
    """Plan `keys` (default: all) and the segments they are built from: every leaf once, every feature read.
    With another engine's `target`, a by_field split it cannot name the same way fails its segment."""
    order = segments.closure(list(keys) if keys is not None else segments.order)
    comp = Compiler(catalogue, as_of)
    atoms = Atoms(con, catalogue, comp)
    plans: dict[str, Plan] = {}
    failed: dict[str, str] = {}
    for key in order:
        seg = segments[key]
        broken = [r for r in seg.refs if r in failed]
        if broken:
            failed[key] = f"built from segment {broken[0]}, which failed"
            continue
        try:
            if key not in fixed and seg.rules is not None:
                plans[key] = atoms.plan(seg.rules)
        except (ArithmeticError, ValueError) as err:  # e.g. a date out of the calendar: this segment alone fails
            failed[key] = f"{type(err).__name__}: {err}"
        if key not in fixed and seg.split is not None and seg.split.by_field:
            comp.features.add(seg.split.by_field)
            if target is not None:
                try:
                    field_arm(key, seg.split.by_field, catalogue, target)
                except CompileError as err:
                    failed[key] = str(err)
    missing = frozenset(comp.features - set(catalogue.columns))
    unknown = sorted(m for m in missing if not m.startswith("custom_"))
    if unknown:
        raise RuntimeError(f"marts.customer_features has no column {', '.join(unknown)}")
    return Planned([k for k in order if k not in failed], comp, atoms, plans, missing, failed)


def evaluate(
    con: duckdb.DuckDBPyConnection,
    segments: SegmentSet,
    as_of: date,
    keys: Sequence[str] | None = None,
    fixed: dict[str, Fixed] | None = None,
    features: tuple[str, str] = FEATURES,
) -> Evaluation:
    """Evaluate `keys` (default: all) and the segments they are built from, for one as-of date.

    `features` is the relation holding each customer's features (acrm_pipelines.features.history
    `features_on` gives it for a past day).
    """
    started = time.perf_counter()
    fixed = fixed or {}
    planned = plan_segments(segments, connection_catalogue(con), as_of, keys, fixed, con)
    # Columns are read back in the stored row order (a scan without ORDER BY), which needs this on.
    keep_order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute("SET preserve_insertion_order = true")
    try:
        result = _evaluate_rows(con, segments, planned, fixed, as_of, features)
        result.failed = planned.failed
    finally:
        drop_rows(con)
        con.execute(f"SET preserve_insertion_order = {str(bool(keep_order)).lower()}")
    result.timings["total_s"] = time.perf_counter() - started
    return result


def _evaluate_rows(
    con: duckdb.DuckDBPyConnection,
    segments: SegmentSet,
    planned: Planned,
    fixed: dict[str, Fixed],
    as_of: date,
    features: tuple[str, str],
) -> Evaluation:
    """The steps over `_acrm_rows`: rows, leaves and aggregates, then each segment from its parts."""
    started = time.perf_counter()
    comp, atoms = planned.comp, planned.atoms
    rows = build_rows(con, comp.features, planned.missing, features)
    result = Evaluation(as_of, rows.ids, rows.row_index)
    result.timings["rows_s"] = time.perf_counter() - started

    t = time.perf_counter()  # aggregates are computed while the comparisons run beside them
    atoms.evaluate(result.n, aggregate_columns(con, comp.aggregates, as_of, result.n))
    rule_bits = {key: atoms.reduce(plan) for key, plan in planned.plans.items()}
    result.timings["rules_s"] = time.perf_counter() - t

    t = time.perf_counter()
    wide = Wide(partial(_column, con), comp.catalogue)
    compose_all(result, segments, planned.order, fixed, rule_bits, wide)
    result.timings["compose_s"] = time.perf_counter() - t
    return result


@dataclass
class Wide:
    """The wide row (one row per customer, aliased `w`) on one engine, for the arms of splits."""

    column: Callable[[exp.Expression], np.ndarray]  # an expression over it, in row order
    catalogue: Catalogue
    target: Target = field(default_factory=Target)


def compose_all(
    result: Evaluation,
    segments: SegmentSet,
    order: list[str],
    fixed: dict[str, Fixed],
    rule_bits: dict[str, np.ndarray],
    wide: Wide,
) -> None:
    """Each segment from its parts, in order: fixed memberships, set operations, rules, then arms."""
    for key in order:
        if key in fixed:
            _apply_fixed(result, key, fixed[key])
        else:
            _compose(wide, result, segments, key, rule_bits)


def _apply_fixed(result: Evaluation, key: str, fixed: Fixed) -> None:
    # Each stored member's row (null for customers no longer in the features), found by Arrow's hash lookup.
    found = pc.index_in(pa.array(fixed.customer_ids, pa.string()), value_set=result.ids)
    present = np.asarray(found.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    rows = np.asarray(found.drop_null().to_numpy(), dtype=np.int64)
    mask = np.zeros(result.n, dtype=bool)
    mask[rows] = True
    result.bits[key] = _pack(mask)
    if fixed.arms is not None:
        names = sorted({a for a in fixed.arms if a is not None})
        lookup = {name: i for i, name in enumerate(names)}
        arms = np.array([lookup.get(a, -1) if a is not None else -1 for a in fixed.arms], dtype=np.int32)
        codes = np.full(result.n, -1, dtype=np.int32)
        codes[rows] = arms[present]
        result.arm_names[key], result.arm_codes[key] = names, codes


def _compose(wide: Wide, result: Evaluation, segments: SegmentSet, key: str, rule_bits: dict[str, np.ndarray]) -> None:
    seg = segments[key]
    bits = result.bits
    base: np.ndarray | None = None
    if seg.from_ is not None:
        src = seg.from_
        parts: list[np.ndarray] = []
        if src.union:
            parts.append(np.bitwise_or.reduce([bits[r] for r in src.union]))
        parts += [bits[r] for r in src.intersect or []]
        base = np.bitwise_and.reduce(parts)
        for r in src.minus:
            base = base & ~bits[r]
    elif seg.priority is not None:
        base = np.bitwise_or.reduce([bits[r] for r in seg.priority])
    if seg.rules is not None:
        base = rule_bits[key] if base is None else base & rule_bits[key]
    assert base is not None  # the model requires rules, from or priority
    # Bits past the last customer stay zero whatever NOT did to them.
    tail = (-result.n) % 8
    if tail and len(base):
        base = base.copy()
        base[-1] &= np.uint8((0xFF << tail) & 0xFF)
    bits[key] = base
    if seg.priority is not None:
        members = result.mask(key)
        codes = np.full(result.n, -1, dtype=np.int32)
        for i, ref in enumerate(seg.priority):
            codes[(codes < 0) & members & result.mask(ref)] = i
        result.arm_names[key], result.arm_codes[key] = list(seg.priority), codes
    elif seg.split is not None:
        members = result.mask(key)
        split = seg.split
        if split.by_field is not None:
            values = wide.column(field_arm(key, split.by_field, wide.catalogue, wide.target))
            names, inverse = np.unique(values[members].astype(str), return_inverse=True)
            codes = np.full(result.n, -1, dtype=np.int32)
            codes[members] = inverse
            result.arm_names[key], result.arm_codes[key] = names.tolist(), codes
        else:
            buckets = wide.column(bucket(split.salt or "", wide.target.dialect)).astype(np.float64)
            weights = split.arm_weights()
            edges = np.cumsum(list(weights.values())) / sum(weights.values()) * 100.0
            codes = np.minimum(np.searchsorted(edges, buckets, side="right"), len(weights) - 1).astype(np.int32)
            codes[~members] = -1
            result.arm_names[key], result.arm_codes[key] = list(weights), codes


def _column(con: duckdb.DuckDBPyConnection, expression: exp.Expression) -> np.ndarray:
    return rows_column(con, expression, WIDE).to_numpy()
