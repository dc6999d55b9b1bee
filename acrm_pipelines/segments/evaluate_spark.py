"""Segments evaluated by Spark SQL (ACRM_ENGINE=spark, docs/spark.md), into the same bitsets as on DuckDB.

The plan is the DuckDB engine's (evaluate.plan_segments): the same sqlglot trees, every distinct leaf once.
Spark then does the work that grows with the data:

1. the wide row (compile.wide_select): one row per customer with the features the rules read and every
   behaviour aggregate, computed by one GROUP BY per fact mart; cached for the day;
2. the leaves, `SQL_BATCH` predicates per query over the cached row (many segments per scan);
3. the split buckets and by_field arms, as expressions over the same row.

Each query returns its columns ordered by customer_id, as Arrow; the rows are put into the history's
customer order (the index stays in the DuckDB state file, with the memberships) and packed into bits.
Groups, set operations, priorities and splits are then the same numpy code as on DuckDB (evaluate.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
from sqlglot import exp

from acrm_pipelines.segments.atoms import SQL_BATCH, as_bools
from acrm_pipelines.segments.catalogue import Catalogue, kind_of
from acrm_pipelines.segments.compile import FEATURES, KEY, WIDE, Target, filters_as_case, wide_select
from acrm_pipelines.segments.evaluate import Evaluation, Fixed, Wide, compose_all, plan_segments
from acrm_pipelines.segments.validate import SegmentSet
from acrm_pipelines.sql import table_exists

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

WIDE_VIEW = "acrm_wide"


def spark_feature_types(spark: SparkSession) -> dict[str, str]:
    """marts.customer_features' columns with their Spark types (e.g. `array<string>`, `timestamp_ntz`)."""
    if not spark.catalog.tableExists(f"{FEATURES[0]}.{FEATURES[1]}"):
        raise RuntimeError("marts.customer_features is missing in Spark: build the features before the segments")
    return dict(spark.table(f"{FEATURES[0]}.{FEATURES[1]}").dtypes)


def evaluate_spark(
    spark: SparkSession,
    con: duckdb.DuckDBPyConnection,
    segments: SegmentSet,
    as_of: date,
    keys: Sequence[str] | None = None,
    fixed: dict[str, Fixed] | None = None,
) -> Evaluation:
    """Evaluate `keys` (default: all) on Spark for one as-of date; `con` is the DuckDB state file (the
    history's customer index)."""
    started = time.perf_counter()
    fixed = fixed or {}
    types = spark_feature_types(spark)
    catalogue = Catalogue({name: kind_of(t) for name, t in types.items()}, custom_known=False)
    target = Target("spark", types)
    planned = plan_segments(segments, catalogue, as_of, keys, fixed, target=target)
    comp, atoms = planned.comp, planned.atoms
    select = wide_select(comp.features, comp.aggregates, as_of, planned.missing).transform(filters_as_case)
    spark.sql(f"CACHE TABLE {WIDE_VIEW} AS {select.sql('spark')}")
    try:
        ids = spark.sql(f"SELECT {KEY} FROM {WIDE_VIEW} ORDER BY {KEY}").toArrow()[KEY].combine_chunks()
        order, row_index = _history_order(con, ids)
        result = Evaluation(as_of, ids.take(pa.array(order)), row_index)
        result.timings["rows_s"] = time.perf_counter() - started

        t = time.perf_counter()
        leaves = list(atoms.sql)
        for start in range(0, len(leaves), SQL_BATCH):
            chunk = leaves[start : start + SQL_BATCH]
            fetched = _columns(spark, [atoms.sql[k] for k in chunk])
            for i, key in enumerate(chunk):
                atoms.bits[key] = np.packbits(as_bools(fetched[f"p{i}"])[order])
        rule_bits = {key: atoms.reduce(plan) for key, plan in planned.plans.items()}
        result.timings["rules_s"] = time.perf_counter() - t

        t = time.perf_counter()

        def column(expression: exp.Expression) -> np.ndarray:
            return _columns(spark, [expression])["p0"].to_numpy(zero_copy_only=False)[order]

        wide = Wide(column, catalogue, target)
        compose_all(result, segments, planned.order, fixed, rule_bits, wide)
        result.timings["compose_s"] = time.perf_counter() - t
    finally:
        spark.sql(f"UNCACHE TABLE IF EXISTS {WIDE_VIEW}")
        spark.sql(f"DROP VIEW IF EXISTS {WIDE_VIEW}")
    result.failed = planned.failed
    result.timings["total_s"] = time.perf_counter() - started
    return result


def _columns(spark: SparkSession, expressions: list[exp.Expression]) -> pa.Table:
    """Expressions over the cached wide row (aliased `w`) as columns p0, p1, …, ordered by customer_id."""
    select = (
        exp.select(*[e.as_(f"p{i}") for i, e in enumerate(expressions)])
        .from_(exp.to_table(WIDE_VIEW).as_(WIDE))
        .order_by(exp.column(KEY, WIDE))
    )
    return spark.sql(select.transform(filters_as_case).sql("spark")).toArrow()


def _history_order(con: duckdb.DuckDBPyConnection, ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `ids` in the history's row order (indexed customers by index, then the rest by id),
    and each row's index (-1 = not indexed yet): the order evaluate.build_rows gives on DuckDB."""
    if not table_exists(con, "segments", "customer_index"):
        by_id = np.argsort(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object), kind="stable")
        return by_id.astype(np.int64), np.full(len(ids), -1, dtype=np.int64)
    rows = pa.table({"pos": pa.array(np.arange(len(ids), dtype=np.int64)), KEY: ids})
    cur = con.cursor()  # a connection of its own for the registered ids
    cur.register("_acrm_spark_ids", rows)
    try:
        ordered = cur.sql(
            f"""SELECT r.pos, i.idx FROM _acrm_spark_ids r LEFT JOIN segments.customer_index i USING ({KEY})
            ORDER BY i.idx NULLS LAST, r.{KEY}"""
        ).to_arrow_table()
    finally:
        cur.close()
    return ordered["pos"].to_numpy(), ordered["idx"].fill_null(-1).to_numpy().astype(np.int64)
