"""Shared fixtures: real DuckDB files, real dbt runs and real Dagster materializations in tmp folders.

The helpers several test modules use are fixtures here, most of them factories: the fixture returns a function
that the test calls with its own arguments (`make_settings(tmp_path, landing)`). They hold no state, so they
are session-scoped and any fixture may ask for them. Test modules import none of this file; the dates of the
demo data are plain data in tests/cases/demo.py. The throwaway PostgreSQL server (`postgres_dsn`) is the plugin
tests/pg_server.py.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import yaml
from dagster import DagsterInstance

from acrm_pipelines.exports.spec import Export
from acrm_pipelines.exports.validate import ExportSet, load_exports
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.segments.history import record
from acrm_pipelines.segments.validate import SegmentSet, load_segments
from acrm_pipelines.settings import Settings, quiet_telemetry
from tests.cases.demo import DEMO_END

pytest_plugins = ["tests.pg_server"]

quiet_telemetry()
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

TEST_START = date(2019, 1, 1)


# --- settings and whole runs --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def make_settings() -> Callable[..., Settings]:
    """`make_settings(tmp, landing, db=None, with_exports=False)`: Settings for a landing folder, files in `tmp`:
    the repo's segments; its example exports and journeys only when asked (they need those segments)."""

    def make(tmp: Path, landing: Path, db: Path | None = None, with_exports: bool = False) -> Settings:
        base = Settings.from_env()
        return dataclasses.replace(
            base,
            landing_dir=landing,
            duckdb_path=db or tmp / "acrm.duckdb",
            outbox_dir=tmp / "outbox",
            exports_dir=base.exports_dir if with_exports else tmp / "no_exports",
            journeys_dir=base.journeys_dir if with_exports else tmp / "no_journeys",
            start_date=TEST_START,
        )

    return make


@pytest.fixture(scope="session")
def run_pipeline() -> Callable[..., object]:
    """`run_pipeline(settings, as_of, instance=None)`: the whole daily job for one partition, in-process, as
    `acrm run` does it (on an ephemeral instance unless given one)."""

    def run_pipeline(settings: Settings, as_of: str, instance: DagsterInstance | None = None):
        from acrm_pipelines.automation.runner import run_partition
        from acrm_pipelines.definitions import build_definitions

        defs = build_definitions(settings)
        return run_partition(defs, settings, as_of, instance or DagsterInstance.ephemeral())

    return run_pipeline


@pytest.fixture(scope="session")
def acrm() -> Callable[..., subprocess.CompletedProcess]:
    """`acrm(*args, env=...)`: the installed `acrm` command in a subprocess, `env` over this environment."""

    def acrm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        exe = Path(sys.executable).parent / "acrm"
        return subprocess.run([str(exe), *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)

    return acrm


# --- landing files --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def demo_landing(tmp_path_factory) -> Path:
    """A generated landing folder of a few thousand customers (CSV), shared by the session."""
    from acrm_pipelines.demo.generator import generate

    landing = tmp_path_factory.mktemp("demo") / "landing"
    generate(landing, customers=3000, seed=7, fmt="csv", end_date=DEMO_END)
    return landing


@pytest.fixture(scope="session")
def write_csv() -> Callable[[Path, list[str], list[list[str]]], None]:
    """`write_csv(path, header, rows)`: a CSV file (and its folders)."""

    def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    return write_csv


# --- hand-set marts and segments, for tests that need no dbt run ------------------------------------------------
FACTS = {
    "fct_orders": "order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, total_amount DECIMAL(18,2), "
    "status VARCHAR, store_id VARCHAR, channel VARCHAR",
    "fct_order_lines": "order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, status VARCHAR, store_id VARCHAR, "
    "channel VARCHAR, "
    "product_id VARCHAR, product_name VARCHAR, category VARCHAR, brand VARCHAR, quantity BIGINT, "
    "price DECIMAL(18,2), line_amount DECIMAL(18,2)",
    "fct_events": "customer_id VARCHAR, occurred_at TIMESTAMP, event_type VARCHAR, channel VARCHAR, properties VARCHAR",
    "fct_messages": "message_id VARCHAR, customer_id VARCHAR, campaign_id VARCHAR, channel VARCHAR, "
    "sent_at TIMESTAMP, delivered_at TIMESTAMP, opened_at TIMESTAMP, clicked_at TIMESTAMP, "
    "complained_at TIMESTAMP, unsubscribed_at TIMESTAMP",
    "fct_bonus_transactions": "customer_id VARCHAR, occurred_at TIMESTAMP, points DECIMAL(18,2), reason VARCHAR",
}


@pytest.fixture(scope="session")
def fact_tables() -> dict[str, str]:
    """The fact marts the hand-set files have (empty): table name -> its columns, as DuckDB DDL."""
    return FACTS


@pytest.fixture(scope="session")
def make_marts() -> Callable[[Path, str], duckdb.DuckDBPyConnection]:
    """`make_marts(path, features_sql)`: a DuckDB file whose marts.customer_features is the rows
    `features_sql` selects (customer_id plus any catalogue columns), and empty fact marts."""

    def make_marts(path: Path, features_sql: str) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(path))
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(f"CREATE OR REPLACE TABLE marts.customer_features AS {features_sql}")
        for name, columns in FACTS.items():
            con.execute(f"CREATE TABLE IF NOT EXISTS marts.{name} ({columns})")
        return con

    return make_marts


@pytest.fixture(scope="session")
def segment_set() -> Callable[[Path, str], SegmentSet]:
    """`segment_set(tmp, yaml_text)`: the validated segments of one YAML file written to `tmp`/segments."""

    def segment_set(tmp: Path, yaml_text: str) -> SegmentSet:
        folder = tmp / "segments"
        folder.mkdir(exist_ok=True)
        (folder / "s.yaml").write_text(yaml_text)
        return load_segments([folder], load_catalogue(), root=tmp)

    return segment_set


# --- hand-set customer features and recorded memberships, for export tests --------------------------------------
# Every feature an export test may read, with its type; rows give any subset (the rest is null).
FEATURE_TYPES = {
    "customer_id": pa.string(),
    "first_name": pa.string(),
    "last_name": pa.string(),
    "email": pa.string(),
    "phone": pa.string(),
    "country": pa.string(),
    "city": pa.string(),
    "bonus_balance": pa.float64(),
    "total_amount": pa.float64(),
    "consent_email": pa.bool_(),
    "consent_sms": pa.bool_(),
    "consent_push": pa.bool_(),
    "unsubscribed": pa.bool_(),
    "unsubscribed_email": pa.bool_(),
    "unsubscribed_sms": pa.bool_(),
    "unsubscribed_push": pa.bool_(),
    "complained": pa.bool_(),
    "timezone": pa.string(),
}


@pytest.fixture(scope="session")
def set_features() -> Callable[[duckdb.DuckDBPyConnection, list[dict]], None]:
    """`set_features(con, rows)`: marts.customer_features replaced by `rows` (features of FEATURE_TYPES, any
    subset, the rest null), and the fact marts created empty where missing."""

    def set_features(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
        table = pa.table({name: pa.array([r.get(name) for r in rows], kind) for name, kind in FEATURE_TYPES.items()})
        con.register("_features", table)
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute("CREATE OR REPLACE TABLE marts.customer_features AS SELECT * FROM _features")
        con.unregister("_features")
        for name, columns in FACTS.items():
            con.execute(f"CREATE TABLE IF NOT EXISTS marts.{name} ({columns})")

    return set_features


@pytest.fixture(scope="session")
def record_segments() -> Callable[[duckdb.DuckDBPyConnection, SegmentSet, date], None]:
    """`record_segments(con, segments, as_of)`: the segments evaluated on `as_of` and recorded in the history."""

    def record_segments(con: duckdb.DuckDBPyConnection, segments: SegmentSet, as_of: date) -> None:
        result = evaluate(con, segments, as_of)
        record(con, result, segments.order, {k: segments[k].version() for k in segments.order})

    return record_segments


@pytest.fixture(scope="session")
def make_db(set_features, segment_set, record_segments) -> Callable[..., tuple[duckdb.DuckDBPyConnection, SegmentSet]]:
    """`make_db(tmp, rows, segments_yaml, as_of)`: (connection to `tmp`/db.duckdb, segments) with the features
    `rows` and the segments recorded on `as_of`."""

    def make_db(
        tmp: Path, rows: list[dict], segments_yaml: str, as_of: date
    ) -> tuple[duckdb.DuckDBPyConnection, SegmentSet]:
        con = duckdb.connect(str(tmp / "db.duckdb"))
        set_features(con, rows)
        segments = segment_set(tmp, segments_yaml)
        record_segments(con, segments, as_of)
        return con, segments

    return make_db


@pytest.fixture(scope="session")
def export_set() -> Callable[[Path, list[dict], SegmentSet], ExportSet]:
    """`export_set(tmp, exports, segments)`: the validated exports of one YAML file written to `tmp`/exports."""

    def export_set(tmp: Path, exports: list[dict], segments: SegmentSet) -> ExportSet:
        folder = tmp / "exports"
        folder.mkdir(exist_ok=True)
        (folder / "e.yaml").write_text(yaml.safe_dump_all(exports, sort_keys=False))
        return load_exports([folder], segments, load_catalogue(), root=tmp)

    return export_set


@pytest.fixture(scope="session")
def one_export(export_set) -> Callable[[Path, dict, SegmentSet], Export]:
    """`one_export(tmp, definition, segments)`: the one validated export of `definition`."""

    def one_export(tmp: Path, definition: dict, segments: SegmentSet) -> Export:
        return export_set(tmp, [definition], segments)[definition["key"]]

    return one_export
