"""Rule trees → packed bitsets: each leaf condition once for all segments, groups as bit operations.

A leaf (a field condition or a behaviour condition) reads one column. Leaves are keyed by their SQL
(compile.py), so the same condition in many segments is evaluated once. How a leaf is evaluated:

- numbers, booleans, dates and behaviour aggregates: a numpy comparison on the column
  (dates as days; `ignore_year` as month × 100 + day);
- text: the leaf's own SQL run by DuckDB over the column's distinct values, then mapped to rows;
- anything else (lists, `any`-typed custom columns): the leaf's SQL over `_acrm_rows`, in batches.

Every path gives SQL's two-valued answer (a null never matches, except `is_null`); the differential
tests compare the result with an independent pandas evaluator and with the SQL `acrm explain` shows.
Measured at 10M customers: a numpy comparison plus packing takes ~5 ms; the same predicate in a
DuckDB batch took ~30 ms (docs/benchmarks.md).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from functools import partial

import duckdb
import numpy as np
import pyarrow as pa
from sqlglot import exp

from acrm_pipelines.segments.catalogue import Catalogue
from acrm_pipelines.segments.columns import ROWS, Codes, Values, isin, numeric_column, text_column
from acrm_pipelines.segments.compile import (
    WIDE,
    Compiler,
    aggregate_for,
    col,
    literal,
    month_day_expression,
    month_day_keys,
)
from acrm_pipelines.segments.dates import parse_date
from acrm_pipelines.segments.spec import AllGroup, AnyGroup, BehaviourCondition, FieldCondition, NotGroup

COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
NUMERIC_OPS = (*COMPARE, "between", "in", "not_in")
SQL_BATCH = 100
DISTINCT_VIEW = "_acrm_distinct_values"
EPOCH = date(1970, 1, 1)

# A plan is a leaf's key, or (op, [plans]) with op "and" / "or" / "not".
Plan = str | tuple


class Atoms:
    """Plans rule trees for one as-of date, then evaluates every distinct leaf once."""

    def __init__(self, con: duckdb.DuckDBPyConnection, catalogue: Catalogue, compiler: Compiler):
        self.con, self.catalogue, self.comp = con, catalogue, compiler
        self.leaves: dict[str, FieldCondition | BehaviourCondition] = {}
        self.sql: dict[str, exp.Expression] = {}
        self.bits: dict[str, np.ndarray] = {}
        self.n = 0
        self._columns: dict[tuple[str, bool | str], Values | Codes] = {}
        self._aggregates: dict[str, np.ndarray] = {}

    # --- planning (before the rows exist: it also tells which features and aggregates to fetch) ---

    def plan(self, cond) -> Plan:
        if isinstance(cond, AllGroup):
            return ("and", [self.plan(c) for c in cond.all])
        if isinstance(cond, AnyGroup):
            return ("or", [self.plan(c) for c in cond.any])
        if isinstance(cond, NotGroup):
            return ("not", [self.plan(cond.not_)])
        predicate = self.comp.rules(cond)  # also records the feature or aggregate the leaf reads
        key = predicate.sql("duckdb")
        self.leaves.setdefault(key, cond)
        self.sql.setdefault(key, predicate)
        return key

    # --- evaluation ---------------------------------------------------------------------------------

    def evaluate(self, n: int, aggregates: Iterable[tuple[str, np.ndarray]]) -> None:
        """Evaluate every planned leaf over the `n` rows of `_acrm_rows`.

        DuckDB work (fetching columns, aggregates) stays in this thread; the numpy comparisons run in
        a pool beside it (numpy releases the GIL), one task per leaf, each returning packed bits.
        """
        self.n = n
        by_aggregate: dict[str, list[str]] = {}
        for key, cond in self.leaves.items():
            if isinstance(cond, BehaviourCondition):
                by_aggregate.setdefault(aggregate_for(cond, self.comp.as_of).name, []).append(key)
        in_sql: list[str] = []
        futures: dict[str, Future] = {}
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            for key, cond in self.leaves.items():
                if isinstance(cond, FieldCondition):
                    task = self._field(key, cond)
                    if task is None:
                        in_sql.append(key)
                    else:
                        futures[key] = pool.submit(_packed, task)
            for name, values in aggregates:
                for key in by_aggregate.get(name, []):
                    futures[key] = pool.submit(_packed, partial(_behaviour, values, self.leaves[key]))
            self.bits.update({key: future.result() for key, future in futures.items()})
        for start in range(0, len(in_sql), SQL_BATCH):
            chunk = in_sql[start : start + SQL_BATCH]
            select = exp.select(*[self.sql[k].as_(f"p{i}") for i, k in enumerate(chunk)]).from_(
                exp.to_table(ROWS).as_(WIDE)
            )
            fetched = self.con.sql(select.sql("duckdb")).to_arrow_table()
            for i, key in enumerate(chunk):
                self.bits[key] = np.packbits(as_bools(fetched[f"p{i}"]))

    def reduce(self, plan: Plan) -> np.ndarray:
        if isinstance(plan, str):
            return self.bits[plan]
        op, parts = plan
        values = [self.reduce(p) for p in parts]
        if op == "not":
            return ~values[0]  # bits past the last row are cleared by the caller
        return np.bitwise_and.reduce(values) if op == "and" else np.bitwise_or.reduce(values)

    # --- leaves ---------------------------------------------------------------------------------------

    def _field(self, key: str, cond: FieldCondition) -> Callable[[], np.ndarray] | None:
        """A numpy task giving the leaf's rows (its column already fetched), or None to leave it to SQL."""
        kind = self.catalogue.kind(cond.field)
        if kind in ("number", "boolean", "date", "timestamp"):
            column = self._column(cond.field, kind in ("date", "timestamp"))
            if cond.op in ("is_null", "is_not_null"):
                return partial(_is_null, column.null, cond.op == "is_not_null")
            if cond.op not in NUMERIC_OPS:
                return None
            if cond.ignore_year:
                if (cond.field, "md") not in self._columns:
                    md = month_day_expression(col(cond.field), self.comp.as_of)
                    self._columns[(cond.field, "md")] = numeric_column(self.con, md)
                return partial(_month_day, self._columns[(cond.field, "md")], cond, self.comp.as_of)
            values = _numeric_values(cond, kind, self.comp.as_of)
            if values is None or column.nan:  # DuckDB orders NaN above every number; numpy doesn't
                return None
            return partial(_compare, column, cond.op, values)
        if kind == "text":
            codes = self._column(cond.field, False)
            if cond.op in ("is_null", "is_not_null"):
                return partial(_is_null, codes.codes < 0, cond.op == "is_not_null")
            return self._by_value(key, cond.field, codes)
        return None

    def _column(self, name: str, days: bool):
        if (name, days) not in self._columns:
            kind = self.catalogue.kind(name)
            expression: exp.Expression = col(name)
            if days:  # the rules compare dates: a timestamp counts by its date
                expression = exp.Sub(this=exp.cast(expression, exp.DataType.Type.DATE), expression=literal(EPOCH))
            self._columns[(name, days)] = (
                text_column(self.con, name) if kind == "text" else numeric_column(self.con, expression)
            )
        return self._columns[(name, days)]

    def _by_value(self, key: str, name: str, codes: Codes) -> Callable[[], np.ndarray]:
        """Run the leaf's SQL over the distinct values here; the task takes the rows whose value matched."""
        self.con.register(DISTINCT_VIEW, pa.table({name: codes.values}))
        try:
            select = exp.select(self.sql[key].as_("p")).from_(exp.to_table(DISTINCT_VIEW).as_(WIDE))
            matched = np.flatnonzero(as_bools(self.con.sql(select.sql("duckdb")).to_arrow_table()["p"]))
        finally:
            self.con.unregister(DISTINCT_VIEW)
        if len(matched) <= 8:  # a few values: a chain of comparisons on the codes
            return partial(isin, codes.codes, matched.tolist()) if len(matched) else partial(np.zeros, self.n, bool)
        lookup = np.zeros(len(codes.values) + 1, dtype=bool)  # the last entry is null (code -1)
        lookup[matched] = True
        return partial(np.take, lookup, codes.codes)


def _packed(task: Callable[[], np.ndarray]) -> np.ndarray:
    return np.packbits(task())


def _behaviour(values: np.ndarray, cond: BehaviourCondition) -> np.ndarray:
    mask = np.ones(len(values), dtype=bool)
    for op, threshold in cond.comparison.checks.items():
        mask &= COMPARE[op](values, threshold)
    return mask


def _is_null(null: np.ndarray, negate: bool) -> np.ndarray:
    return ~null if negate else null


def as_bools(arr: pa.ChunkedArray) -> np.ndarray:
    arr = arr.combine_chunks()
    return np.asarray((arr.fill_null(False) if arr.null_count else arr).to_numpy(zero_copy_only=False), dtype=bool)


def _numeric_values(cond: FieldCondition, kind: str, as_of: date) -> list | None:
    """The condition's values as the column holds them (dates as days), or None when SQL should decide."""
    values = cond.value if isinstance(cond.value, list) else [cond.value]
    if kind in ("date", "timestamp"):
        days = [parse_date(v, as_of) for v in values]
        return None if any(d is None for d in days) else [(d - EPOCH).days for d in days]
    if kind == "boolean":
        return values if all(isinstance(v, bool) for v in values) else None
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return values if ok else None


def _compare(column: Values, op: str, values: list) -> np.ndarray:
    data = column.data
    if op == "between":
        mask = (data >= values[0]) & (data <= values[1])
    elif op in ("in", "not_in"):
        mask = isin(data, values)
        if op == "not_in":
            mask = ~mask
    else:
        mask = COMPARE[op](data, values[0])
    return mask & ~column.null


def _month_day(md: Values, cond: FieldCondition, as_of: date) -> np.ndarray:
    keys = month_day_keys(cond, as_of)
    if cond.op == "=":
        mask = md.data == keys[0]
    elif keys[0] <= keys[1]:
        mask = (md.data >= keys[0]) & (md.data <= keys[1])
    else:  # wraps over the new year
        mask = (md.data >= keys[0]) | (md.data <= keys[1])
    return mask & ~md.null
