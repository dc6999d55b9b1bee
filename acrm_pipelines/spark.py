"""The Spark engine's plumbing (ACRM_ENGINE=spark, docs/spark.md): the session, and SQL results as Arrow.

One place knows the session's settings, so that dbt-spark's `session` method (which opens the session
through `SparkSession.builder`, in the same process when dbt runs in-process) and the segment engine read
the same warehouse and metastore with the same SQL semantics:

- UTC session time and TIMESTAMP_NTZ timestamps: DuckDB's TIMESTAMP has no time zone, and a wall-clock
  time must compare the same on both engines;
- ANSI mode off, as dbt-spark sets it for its own statements;
- the Hive metastore (Derby, one JVM at a time) and the warehouse under ACRM_SPARK_DIR.

pyspark is imported only here, and only when the engine is Spark: DuckDB users never start a JVM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from acrm_pipelines.settings import Settings


def session_conf(settings: Settings) -> dict[str, str]:
    """The Spark configuration the project runs with (also dbt-spark's `server_side_parameters`)."""
    warehouse = warehouse_path(settings)
    metastore = f"jdbc:derby:;databaseName={settings.spark_dir / 'metastore_db'};create=true"
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "acrm",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.executor.memory": settings.spark_executor_memory,
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.hadoop.javax.jdo.option.ConnectionURL": metastore,
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={settings.spark_dir}",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.timestampType": "TIMESTAMP_NTZ",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }


def spark_env(settings: Settings) -> dict[str, str]:
    """The ACRM_* variables a child process (dbt's profile, `acrm-dbt`, the segment child) reads to open the
    same session on the same files as `settings` say."""
    return {
        "ACRM_ENGINE": "spark",
        "ACRM_DUCKDB_PATH": str(settings.duckdb_path),
        "ACRM_SPARK_DIR": str(settings.spark_dir),
        "ACRM_SPARK_MASTER": settings.spark_master,
        "ACRM_SPARK_DRIVER_MEMORY": settings.spark_driver_memory,
        "ACRM_SPARK_EXECUTOR_MEMORY": settings.spark_executor_memory,
        "ACRM_SPARK_SHUFFLE_PARTITIONS": str(settings.spark_shuffle_partitions),
    }


def session(settings: Settings, *, verbose: bool = False) -> SparkSession:
    """The process's Spark session with the project's configuration (created on first use). The JVM's own
    output (its start-up warnings, Spark's log) goes to ACRM_SPARK_DIR/spark.log unless `verbose`."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    settings.spark_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a local session needs no other interface
    if SparkContext._gateway is None and not verbose:
        conf = SparkConf(loadDefaults=False).setAll(list(session_conf(settings).items()))
        with open(settings.spark_dir / "spark.log", "ab") as log:  # the JVM keeps its own handle
            SparkContext._gateway = launch_gateway(conf, popen_kwargs={"stdout": log, "stderr": log})
        SparkContext._jvm = SparkContext._gateway.jvm
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    # pyspark logs every failed statement as JSON on stderr, also those its caller handles (dbt-spark probes
    # relations that may not exist): the caller reports what matters.
    from pyspark.logger import PySparkLogger

    PySparkLogger.getLogger("SQLQueryContextLogger").disabled = True
    return spark


def stop(spark: SparkSession) -> None:
    """Stop the session and wait for its JVM to end, so that the next process can open the Derby metastore
    (a child process's JVM would otherwise end some time after the child)."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    spark.stop()
    if gateway is not None:
        gateway.shutdown()
        proc = getattr(gateway, "proc", None)
        if proc is not None:  # the JVM ends when its stdin closes (pyspark's java_gateway)
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        SparkContext._gateway = SparkContext._jvm = None


def arrow(spark: SparkSession, sql: str) -> pa.Table:
    """A query's rows as an Arrow table (Spark 4's toArrow: no pandas on the way)."""
    return spark.sql(sql).toArrow()


def warehouse_path(settings: Settings) -> Path:
    return settings.spark_dir / "warehouse"
