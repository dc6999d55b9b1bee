"""The rows and columns segment rules read, as numpy arrays in the history's customer order.

`_acrm_rows` is a temp table with one row per customer of `marts.customer_features`, stored in row
order (the stable customer index of history.py, then new customers by id) with the features rules
read. Feature columns are fetched from it once each; behaviour aggregates are computed from the fact
marts joined to it.

Additive aggregates (count, sum) are summed by numpy (`bincount` per row) over one fetch of the fact
rows in the widest window, with the time window, filters and sign reduced in SQL to small integer
codes. At 10M customers this took the aggregate stage from 23 s (one FILTER aggregate per condition
in DuckDB) to a few seconds; distinct counts keep the SQL FILTER form. Sums of DECIMAL columns are
added as scaled integers, so they are exact like SQL's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from functools import partial

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from acrm_pipelines.segments.compile import FEATURES, KEY, SOURCE_TABLES, WIDE, Aggregate, col, literal, table
from acrm_pipelines.segments.dates import cutoff
from acrm_pipelines.sql import columns as sql_columns
from acrm_pipelines.sql import table_exists

ROWS = "_acrm_rows"
ROW = "_acrm_row"
INDEX = "_acrm_idx"
ADDITIVE = ("count", "sum_amount", "sum_quantity", "sum_points")
MAX_CODED_VALUES = 100


@dataclass
class Rows:
    """One row per customer: ids and history index (-1 = not indexed yet), in row order."""

    ids: pa.Array
    row_index: np.ndarray


def build_rows(
    con: duckdb.DuckDBPyConnection,
    features: set[str],
    missing: frozenset[str],
    relation: tuple[str, str] = FEATURES,
) -> Rows:
    """Create `_acrm_rows` (row order: customer index, then new customers by id) with the features read."""
    has_index = table_exists(con, "segments", "customer_index")
    f = "f"
    idx: exp.Expression = col("idx", "i") if has_index else exp.cast(exp.null(), exp.DataType.Type.BIGINT)
    order = exp.Window(
        this=exp.RowNumber(),
        order=exp.Order(expressions=[exp.Ordered(this=idx.copy(), nulls_first=False), exp.Ordered(this=col(KEY, f))]),
    )
    projections = [
        (order - exp.Literal.number(1)).as_(ROW, quoted=True),
        idx.as_(INDEX, quoted=True),
        col(KEY, f).as_(KEY, quoted=True),
        *[
            (exp.null() if name in missing else col(name, f)).as_(name, quoted=True)
            for name in sorted(features - {KEY})
        ],
    ]
    query = exp.select(*projections).from_(table(*relation, alias=f))
    if has_index:
        query = query.join(table("segments", "customer_index", alias="i"), using=[KEY], join_type="left")
    query = query.order_by(exp.column(ROW, quoted=True))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {ROWS} AS {query.sql('duckdb')}")
    fetched = con.sql(f"SELECT {KEY}, {INDEX} FROM {ROWS}").to_arrow_table()
    row_index = fetched[INDEX].fill_null(-1).to_numpy().astype(np.int64)
    return Rows(fetched[KEY].combine_chunks(), row_index)


def drop_rows(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DROP TABLE IF EXISTS {ROWS}")


def rows_column(con: duckdb.DuckDBPyConnection, expression: exp.Expression, alias: str) -> pa.ChunkedArray:
    """Any SQL expression over `_acrm_rows` (aliased `alias`), in row order, as Arrow."""
    select = exp.select(expression.as_("v")).from_(exp.to_table(ROWS).as_(alias))
    return con.sql(select.sql("duckdb")).to_arrow_table()["v"]


def isin(data: np.ndarray, values: list) -> np.ndarray:
    """np.isin sorts; a few values are faster as a chain of comparisons."""
    if len(values) > 16:
        return np.isin(data, values)
    mask = data == values[0]
    for v in values[1:]:
        mask |= data == v
    return mask


# --- feature columns -----------------------------------------------------------------------------------


@dataclass
class Values:
    """A numeric column (numbers as float64 or int64, dates and timestamps as days since 1970-01-01)."""

    data: np.ndarray
    null: np.ndarray  # bool per row

    @functools.cached_property
    def nan(self) -> bool:
        return bool(self.data.dtype.kind == "f" and np.isnan(self.data).any())


@dataclass
class Codes:
    """A text column as dictionary codes (-1 = null) and the distinct values."""

    codes: np.ndarray
    values: pa.Array


def numeric_column(con: duckdb.DuckDBPyConnection, expression: exp.Expression) -> Values:
    """A number, boolean or day-number expression over `_acrm_rows` (aliased `w`)."""
    sql_type = str(con.sql(exp.select(expression).from_(exp.to_table(ROWS).as_(WIDE)).sql("duckdb")).types[0])
    if sql_type.upper().startswith("DECIMAL"):
        # DuckDB's cast gives the nearest double; Arrow's decimal cast can be one step off (25583.44).
        expression = exp.cast(expression, exp.DataType.Type.DOUBLE)
    arr = rows_column(con, expression, WIDE).combine_chunks()
    null = np.zeros(len(arr), dtype=bool)
    if arr.null_count:
        null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        arr = arr.fill_null(False if pa.types.is_boolean(arr.type) else 0)
    data = np.asarray(arr.to_numpy(zero_copy_only=False))
    return Values(data, null)


def text_column(con: duckdb.DuckDBPyConnection, name: str) -> Codes:
    arr = rows_column(con, col(name), WIDE).combine_chunks()
    encoded = pc.dictionary_encode(arr)
    indices = encoded.indices.fill_null(-1) if encoded.indices.null_count else encoded.indices
    codes = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    return Codes(codes, encoded.dictionary)


# --- behaviour aggregates ----------------------------------------------------------------------------


def aggregate_columns(
    con: duckdb.DuckDBPyConnection, aggregates: dict[str, Aggregate], as_of: date, n: int
) -> Iterator[tuple[str, np.ndarray]]:
    """Every aggregate as (name, values in row order; 0 for customers with nothing in the window).

    One at a time, so that a caller can use each and let it go (10M floats are 80 MB each).
    """
    end = cutoff(as_of)
    by_table: dict[str, list[Aggregate]] = {}
    for agg in aggregates.values():
        by_table.setdefault(agg.table, []).append(agg)
    steps: list[tuple[str, Callable[[pa.Table], Iterator[tuple[str, np.ndarray]]]]] = []
    for name, aggs in sorted(by_table.items()):
        additive = [a for a in aggs if _is_additive(a)]
        if additive:
            steps.append(_additive(con, name, additive, end, n))
        distinct = [a for a in aggs if not _is_additive(a)]
        if distinct:
            steps.append(_filtered(name, distinct, end, n))
    # DuckDB fetches the next fact mart while numpy sums the last one (the caller leaves the connection
    # alone meanwhile; numpy and DuckDB's own work release the GIL).
    with ThreadPoolExecutor(max_workers=1) as fetcher:
        pending = fetcher.submit(_fetch, con, steps[0][0]) if steps else None
        for i, (_, compute) in enumerate(steps):
            fetched = pending.result()
            pending = fetcher.submit(_fetch, con, steps[i + 1][0]) if i + 1 < len(steps) else None
            yield from compute(fetched)


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def _is_additive(agg: Aggregate) -> bool:
    """Counts and sums, by bincount; not distinct counts, nor long filter lists (a CASE per row each)."""
    if agg.metric not in ADDITIVE or (agg.metric == "count" and agg.table == "order_lines"):
        return False
    return all(len(values) <= MAX_CODED_VALUES for _, values in agg.filters)


def _window(aggs: list[Aggregate], end) -> exp.Expression:
    """The fact rows any of `aggs` can count: in the widest window, and among the values of a filter
    that every one of them has (fewer rows to join: e-mail opens only, completed orders only)."""
    first = min(a.start for a in aggs)
    conds = [
        exp.or_(
            *[
                exp.and_(col(c, "x") >= literal(first), col(c, "x") < literal(end))
                for c in sorted({a.time_column for a in aggs})
            ]
        )
    ]
    shared = set.intersection(*[{c for c, _ in a.filters} for a in aggs])
    for column in sorted(shared):
        values = list(dict.fromkeys(v for a in aggs for c, vs in a.filters if c == column for v in vs))
        conds.append(col(column, "x").isin(*[literal(v) for v in values]))
    return exp.and_(*conds)


def _joined(name: str, projections: list[exp.Expression], where: exp.Expression) -> exp.Select:
    schema, tbl, _ = SOURCE_TABLES[name]
    return (
        exp.select(exp.cast(col(ROW, "r"), exp.DataType.Type.INT).as_(ROW, quoted=True), *projections)
        .from_(table(schema, tbl, alias="x"))
        .join(
            exp.select(col(KEY, None), col(ROW, None)).from_(exp.to_table(ROWS)).subquery("r"),
            on=col(KEY, "x").eq(col(KEY, "r")),
        )
        .where(where)
    )


def _additive(
    con: duckdb.DuckDBPyConnection, name: str, aggs: list[Aggregate], end, n: int
) -> tuple[str, Callable[[pa.Table], Iterator[tuple[str, np.ndarray]]]]:
    """One fetch of the fact rows in the widest window (the SQL), then a bincount per aggregate."""
    projections: list[exp.Expression] = []
    # Per time column: 0 outside [start, end), else the number of window starts the row is on or after.
    starts: dict[str, list] = {}
    for a in aggs:
        starts.setdefault(a.time_column, [])
        if a.start not in starts[a.time_column]:
            starts[a.time_column].append(a.start)
    for c, values in starts.items():
        values.sort()
        t = col(c, "x")
        ifs = [exp.If(this=exp.or_(t.is_(exp.null()), t >= literal(end)), true=exp.Literal.number(0))]
        for i, start in enumerate(values[::-1]):  # the m-th earliest start gives number m; latest first
            ifs.append(exp.If(this=t >= literal(start), true=exp.Literal.number(len(values) - i)))
        number = exp.cast(exp.Case(ifs=ifs, default=exp.Literal.number(0)), exp.DataType.Type.SMALLINT)
        projections.append(number.as_(f"t_{c}", quoted=True))
    # Per filter column: 0 for a value no filter names, else the value's number.
    filter_values: dict[str, list] = {}
    for a in aggs:
        for c, values in a.filters:
            known = filter_values.setdefault(c, [])
            known += [v for v in values if v not in known]
    for c, values in filter_values.items():
        ifs = [exp.If(this=col(c, "x").eq(literal(v)), true=exp.Literal.number(i + 1)) for i, v in enumerate(values)]
        number = exp.cast(exp.Case(ifs=ifs, default=exp.Literal.number(0)), exp.DataType.Type.INT)
        projections.append(number.as_(f"f_{c}", quoted=True))
    measures = {_measure(a) for a in aggs} - {None}
    if any(a.sign != "any" for a in aggs):
        measures.add("points")
    measures = sorted(measures)
    types = _column_types(con, name)
    for m in measures:
        projections.append(_scaled(col(m, "x"), types[m]).as_(f"m_{m}", quoted=True))
    return _joined(name, projections, _window(aggs, end)).sql("duckdb"), partial(
        _sums, aggs=aggs, starts=starts, filter_values=filter_values, types=types, n=n
    )


def _sums(
    fetched: pa.Table, aggs: list[Aggregate], starts: dict, filter_values: dict, types: dict, n: int
) -> Iterator[tuple[str, np.ndarray]]:
    rows = {c: _filled(fetched[c]) for c in fetched.column_names}
    del fetched
    for c, values in starts.items():
        # Latest window number first: every window of this time column is then a prefix of the rows.
        number = rows[f"t_{c}"]
        order = np.argsort(-number, kind="stable")
        at_least = np.bincount(number, minlength=len(values) + 1)[::-1].cumsum()[::-1]
        ordered = {k: v[order] for k, v in rows.items() if not k.startswith("t_")}
        for a in aggs:
            if a.time_column != c:
                continue
            # In the window: on or after its start, the m-th earliest, so numbered m or more.
            length = int(at_least[values.index(a.start) + 1])
            keep = np.ones(length, dtype=bool)
            for f, wanted in a.filters:
                keep &= isin(ordered[f"f_{f}"][:length], [filter_values[f].index(v) + 1 for v in wanted])
            if a.sign != "any":
                points = ordered["m_points"][:length]
                keep &= points > 0 if a.sign == "accrual" else points < 0
            row = ordered[ROW][:length][keep]
            m = _measure(a)
            if m is None:
                yield a.name, np.bincount(row, minlength=n)
            else:
                summed = np.bincount(row, weights=ordered[f"m_{m}"][:length][keep], minlength=n)
                scale = 10 ** _scale(types[m])
                yield a.name, summed / scale if scale != 1 else summed


def _measure(agg: Aggregate) -> str | None:
    if agg.metric == "sum_amount":
        return "line_amount" if agg.table == "order_lines" else "total_amount"
    return {"sum_quantity": "quantity", "sum_points": "points"}.get(agg.metric)


def _column_types(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    schema, tbl, _ = SOURCE_TABLES[name]
    return {c: t.upper() for c, t in sql_columns(con, schema, tbl).items()}


def _scale(sql_type: str) -> int:
    found = re.match(r"DECIMAL\(\d+,\s*(\d+)\)", sql_type)
    return int(found.group(1)) if found else 0


def _scaled(column: exp.Expression, sql_type: str) -> exp.Expression:
    """DECIMAL as an exact integer of its smallest unit; integers as they are; anything else as DOUBLE."""
    if sql_type.startswith("DECIMAL"):
        unit = exp.Literal.number(10 ** _scale(sql_type))
        return exp.cast(exp.Mul(this=column, expression=unit), exp.DataType.Type.BIGINT)
    if "INT" in sql_type:
        return exp.cast(column, exp.DataType.Type.BIGINT)
    return exp.cast(column, exp.DataType.Type.DOUBLE)


def _filled(values: pa.ChunkedArray) -> np.ndarray:
    """An Arrow column as numpy; a null becomes 0 (SQL's SUM skips nulls: a null adds nothing)."""
    arr = values.combine_chunks()
    return np.asarray((arr.fill_null(0) if arr.null_count else arr).to_numpy(zero_copy_only=False))


def _filtered(
    name: str, aggs: list[Aggregate], end, n: int
) -> tuple[str, Callable[[pa.Table], Iterator[tuple[str, np.ndarray]]]]:
    """Distinct counts: one GROUP BY with a FILTER per aggregate (the SQL), placed by row."""
    # Aggregate.expression reads unqualified columns: the rows side brings only customer_id and the row.
    projections = [a.expression(end).as_(a.name, quoted=True) for a in aggs]
    select = _joined(name, projections, _window(aggs, end)).group_by(col(ROW, "r"))
    return select.sql("duckdb"), partial(_placed, aggs=aggs, n=n)


def _placed(fetched: pa.Table, aggs: list[Aggregate], n: int) -> Iterator[tuple[str, np.ndarray]]:
    row = _filled(fetched[ROW])
    for a in aggs:
        values = np.zeros(n, dtype=np.float64)
        values[row] = _filled(fetched[a.name])
        yield a.name, values
