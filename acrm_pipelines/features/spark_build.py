"""The dbt models built on Spark (ACRM_ENGINE=spark, docs/spark.md): the loaded raw tables handed over, then
`dbt build` through the profile's `spark` target, in this process so that dbt-spark's `session` method uses
this process's Spark session (a local Derby metastore admits one JVM at a time)."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from acrm_pipelines.ingest.to_spark import publish_raw
from acrm_pipelines.settings import DBT_PROJECT_DIR, Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pyspark.sql import SparkSession

# Campaign analytics read DuckDB's delivery log, which Spark does not have (docs/spark.md).
NOT_ON_SPARK = ("path:models/analytics",)


class SparkBuildFailed(Exception):
    """dbt could not build a model, or a test failed, on Spark."""


@dataclass
class SparkBuild:
    rows: dict[str, int]  # raw rows published per table
    publish_s: float
    dbt_s: float


def build_on_spark(settings: Settings, spark: SparkSession, as_of: date, *, verbose: bool = False) -> SparkBuild:
    """Publish the raw tables of the DuckDB file to Spark and build the features for `as_of` there. A failed
    model or test raises SparkBuildFailed naming them."""
    from dbt.cli.main import dbtRunner

    started = time.perf_counter()
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        rows = publish_raw(con, spark, settings.spark_dir)
    published = time.perf_counter()
    args = ["build", "--target", "spark", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    args += ["--target-path", str(settings.spark_dir / "dbt_target"), "--vars", f"{{as_of: '{as_of.isoformat()}'}}"]
    args += ["--exclude", *NOT_ON_SPARK]
    if not verbose:
        args.append("--quiet")
    with _profile_env(settings):
        result = dbtRunner().invoke(args)
    if not result.success:
        failed = [
            f"{r.node.unique_id}: {r.message}" for r in result.result or [] if r.status not in ("success", "pass")
        ]
        detail = "; ".join(failed) if failed else repr(result.exception)
        raise SparkBuildFailed(f"dbt build on Spark as of {as_of} failed: {detail}")
    return SparkBuild(rows, published - started, time.perf_counter() - published)


@contextmanager
def _profile_env(settings: Settings) -> Iterator[None]:
    """The profile's `spark` output reads these (profiles.yml); the session is already this process's."""
    values = {
        "ACRM_SPARK_DIR": str(settings.spark_dir),
        "ACRM_SPARK_MASTER": settings.spark_master,
        "ACRM_SPARK_DRIVER_MEMORY": settings.spark_driver_memory,
        "ACRM_SPARK_SHUFFLE_PARTITIONS": str(settings.spark_shuffle_partitions),
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def compare_features(duck: pa.Table, spark: pa.Table) -> dict[str, str]:
    """The columns whose types or values differ between DuckDB's and Spark's features (both ordered by
    customer_id), each with what differs; empty when they are equal."""
    problems: dict[str, str] = {}
    if duck.num_rows != spark.num_rows:
        problems["rows"] = f"DuckDB {duck.num_rows:,}, Spark {spark.num_rows:,}"
    for name in sorted(set(duck.column_names) ^ set(spark.column_names)):
        problems[name] = "only on DuckDB" if name in duck.column_names else "only on Spark"
    if "rows" in problems:
        return problems
    for name in duck.column_names:
        if name not in spark.column_names:
            continue
        left, right = duck[name], spark[name]
        if left.type != right.type:
            problems[name] = f"type: DuckDB {left.type}, Spark {right.type}"
        elif not left.equals(right):
            rows = [i for i, (a, b) in enumerate(zip(left.to_pylist(), right.to_pylist(), strict=True)) if a != b]
            problems[name] = f"{len(rows):,} rows differ, e.g. row {rows[0]}" if rows else "chunks differ"
    return problems
