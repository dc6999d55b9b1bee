"""The dbt models built on Spark (ACRM_ENGINE=spark, docs/spark.md): the loaded raw tables handed over, then
`dbt build` through the profile's `spark` target, in this process so that dbt-spark's `session` method uses
this process's Spark session (a local Derby metastore admits one JVM at a time)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from acrm_pipelines.features import lines
from acrm_pipelines.features.dbt import FEATURES_MODEL, dbt_executable, environment
from acrm_pipelines.ingest.to_spark import publish_raw
from acrm_pipelines.settings import DBT_PROJECT_DIR, Settings
from acrm_pipelines.spark import spark_env, warehouse_path
from acrm_pipelines.sql import lit

if TYPE_CHECKING:
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
    with environment(spark_env(settings)):
        result = dbtRunner().invoke(args)
    if not result.success:
        failed = [
            f"{r.node.unique_id}: {r.message}" for r in result.result or [] if r.status not in ("success", "pass")
        ]
        detail = "; ".join(failed) if failed else repr(result.exception)
        raise SparkBuildFailed(f"dbt build on Spark as of {as_of} failed: {detail}")
    return SparkBuild(rows, published - started, time.perf_counter() - published)


# What DuckDB's readers (exports, journeys, `acrm preview`, the segment history's checks) need of a Spark build.
TAKEN = (FEATURES_MODEL, "customer_features_history", "customer_features_dates")


def take_features(con: duckdb.DuckDBPyConnection, settings: Settings) -> dict[str, int]:
    """Spark's feature marts (TAKEN) into the DuckDB file's, in one transaction; returns the rows of each.

    The DuckDB file stays the store of what was decided and sent (history, delivery log, ledger), so those
    readers find the features there whichever engine computed them. DuckDB reads the Parquet files of
    Spark's managed tables under the warehouse (a cluster's, on object storage, needs DuckDB's httpfs)."""
    rows: dict[str, int] = {}
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    con.begin()
    try:
        for name in TAKEN:
            files = lit(str(warehouse_path(settings) / "marts.db" / name / "*.parquet"))
            # Replaced whole, columns too: a custom_* column may come or go between builds. Spark's Parquet
            # types read as the DuckDB types the contracts declare (the test tier compares them).
            con.execute(f"CREATE OR REPLACE TABLE marts.{name} AS SELECT * FROM read_parquet({files})")
            rows[name] = con.execute(f"SELECT count(*) FROM marts.{name}").fetchone()[0]
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return rows


def duckdb_views(database: str, as_of: date, target_path: Path) -> None:
    """What the DuckDB file's readers need beside the features taken from Spark, for `as_of`: the project's
    views (staging, intermediate, the fact marts: the exports' frequency caps, journeys and analytics read
    them) and `marts.customer_features_on(day)`, the history's reader (views and a macro: seconds, whatever
    the data); and the stored order lines the line views read, appended to as on DuckDB (features/lines.py:
    seconds a night, minutes at scale when built in full)."""
    with duckdb.connect(database) as con:
        lines_plan = lines.plan(con)
    common = ["--target-path", str(target_path), "--project-dir", str(DBT_PROJECT_DIR)]
    common += ["--profiles-dir", str(DBT_PROJECT_DIR), "--quiet"]
    views = ["run", "--select", "config.materialized:view", lines.MODEL, "--exclude", *NOT_ON_SPARK]
    views += ["--vars", json.dumps({"as_of": as_of.isoformat()} | lines_plan.dbt_vars())]
    env = {**os.environ, "ACRM_ENGINE": "duckdb", "ACRM_DUCKDB_PATH": database}
    for args in (views, ["run-operation", "create_features_reader_on_duckdb"]):
        done = subprocess.run([dbt_executable(), *args, *common], env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            output = (done.stdout + done.stderr).strip()[-2000:]
            raise SparkBuildFailed(f"`dbt {args[0]}` on the DuckDB file as of {as_of} failed: {output}")
    with duckdb.connect(database) as con:
        lines.record(con, lines_plan)


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
