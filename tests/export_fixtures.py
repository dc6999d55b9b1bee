"""A DuckDB file with hand-set customer features and recorded segment memberships, for export tests."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from acrm_pipelines.exports.spec import Export
from acrm_pipelines.exports.validate import ExportSet, load_exports
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.segments.history import record
from acrm_pipelines.segments.validate import SegmentSet
from tests.segment_fixtures import FACTS, segment_set

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
}


def set_features(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    table = pa.table({name: pa.array([r.get(name) for r in rows], kind) for name, kind in FEATURE_TYPES.items()})
    con.register("_features", table)
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    con.execute("CREATE OR REPLACE TABLE marts.customer_features AS SELECT * FROM _features")
    con.unregister("_features")
    for name, columns in FACTS.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS marts.{name} ({columns})")


def record_segments(con: duckdb.DuckDBPyConnection, segments: SegmentSet, as_of: date) -> None:
    result = evaluate(con, segments, as_of)
    record(con, result, segments.order, {k: segments[k].version() for k in segments.order})


def make_db(tmp: Path, rows: list[dict], segments_yaml: str, as_of: date):
    """(connection, segments) with the features `rows` and the segments recorded on `as_of`."""
    con = duckdb.connect(str(tmp / "db.duckdb"))
    set_features(con, rows)
    segments = segment_set(tmp, segments_yaml)
    record_segments(con, segments, as_of)
    return con, segments


def export_set(tmp: Path, exports: list[dict], segments: SegmentSet) -> ExportSet:
    folder = tmp / "exports"
    folder.mkdir(exist_ok=True)
    (folder / "e.yaml").write_text(yaml.safe_dump_all(exports, sort_keys=False))
    return load_exports([folder], segments, load_catalogue(), root=tmp)


def one_export(tmp: Path, definition: dict, segments: SegmentSet) -> Export:
    return export_set(tmp, [definition], segments)[definition["key"]]
