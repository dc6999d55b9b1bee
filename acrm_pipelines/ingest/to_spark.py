"""The loaded raw tables, handed to Spark (ACRM_ENGINE=spark, docs/spark.md).

The loader runs as on DuckDB (the same types, the same quarantine), then each raw table is written as
Parquet under ACRM_SPARK_DIR and registered in Spark's metastore as `raw.<table>`, which dbt's sources
read. Each copy goes to a new folder and the table is pointed at it before the old folder goes, so a
reader never sees a half-written table. Loading itself stays on one machine: a cluster would read the
landing files where they are (docs/spark.md says what changes).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from acrm_pipelines.sql import lit, table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

RAW_TABLES = ("customers", "products", "orders", "order_lines", "events", "messages", "bonus_transactions")


def publish_raw(con: duckdb.DuckDBPyConnection, spark: SparkSession, spark_dir: Path) -> dict[str, int]:
    """Copy every raw table to Spark; returns the rows per table."""
    root = spark_dir / "raw"
    root.mkdir(parents=True, exist_ok=True)
    spark.sql("CREATE DATABASE IF NOT EXISTS raw")
    rows: dict[str, int] = {}
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"{time.time_ns() % 1_000_000_000:09d}"
    for name in RAW_TABLES:
        folder = root / name / stamp
        folder.mkdir(parents=True)
        con.execute(f"COPY {table('raw', name)} TO {lit(str(folder / 'part-0.parquet'))} (FORMAT parquet)")
        rows[name] = con.execute(f"SELECT count(*) FROM {table('raw', name)}").fetchone()[0]
        spark.sql(f"DROP TABLE IF EXISTS raw.{name}")
        spark.sql(f"CREATE TABLE raw.{name} USING parquet LOCATION '{folder.as_posix()}'")
        for old in (root / name).iterdir():
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
    return rows
