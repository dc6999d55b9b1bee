"""Typed load of one landing table into DuckDB, with every bad row quarantined with its reason.

Pure DuckDB + Python (no Dagster), so it is tested directly. The steps, all set-based SQL so that
tens of millions of rows load without passing through Python:

1. read every file of the table as text, with its file name and 1-based row number;
2. trim, type and classify each row (the first failing row-level check names the reason);
3. among the remaining rows, later duplicates of a key and references to unloaded parents;
4. write the good rows to ``raw.<table>`` and the bad ones to ``raw.quarantine``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from acrm_pipelines.ingest.contract import (
    FALSE_WORDS,
    STATUSES,
    TRUE_WORDS,
    Column,
    TableSpec,
)
from acrm_pipelines.ingest.phones import normalise_phone
from acrm_pipelines.ingest.sql import ident, lit, table
from acrm_pipelines.settings import Settings

RAW_SCHEMA = "raw"
SUFFIXES = (".csv", ".parquet")
# A time followed by a zone suffix (Z, +03:00, -0500): the suffix is dropped, times are shop-local.
_TZ_SUFFIX = r"(\d\d:\d\d(:\d\d(\.\d+)?)?)(Z|[+-]\d\d(:?\d\d)?)$"


class LoadError(Exception):
    """A landing file that cannot be loaded at all (unreadable, missing a required column)."""


@dataclass
class LoadResult:
    table: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    custom_columns: dict[str, str] = field(default_factory=dict)
    reused: bool = False  # the files had not changed since the last load: raw.<table> was kept as it was


QUARANTINE_DDL = f"""
CREATE TABLE IF NOT EXISTS {table(RAW_SCHEMA, "quarantine")} (
    table_name VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    raw_row JSON,
    loaded_at TIMESTAMP NOT NULL
)"""


def discover_files(landing_dir: Path, name: str) -> list[Path]:
    """`<name>.csv`, `<name>.parquet`, or every CSV/Parquet file in the folder `<name>/`, by name."""
    files = [landing_dir / f"{name}{suffix}" for suffix in SUFFIXES if (landing_dir / f"{name}{suffix}").is_file()]
    folder = landing_dir / name
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    return files


# --- typing: one SQL expression per column kind, over the trimmed text value -----------------------


def _words(words: tuple[str, ...]) -> str:
    return ", ".join(lit(w) for w in words)


def _parsed(col: Column) -> str:
    v = ident(col.name)
    if col.kind in ("id", "text"):
        return v
    if col.kind == "lower":
        return f"lower({v})"
    if col.kind in ("timestamp", "date"):
        ts = f"try_cast(regexp_replace({v}, {lit(_TZ_SUFFIX)}, '\\1') AS TIMESTAMP)"
        return ts if col.kind == "timestamp" else f"CAST({ts} AS DATE)"
    if col.kind in ("amount", "points"):
        return f"try_cast({v} AS DECIMAL(18, 2))"
    if col.kind == "quantity":
        return f"CASE WHEN {v} IS NULL THEN 1 WHEN regexp_full_match({v}, '[+-]?[0-9]+') THEN CAST({v} AS BIGINT) END"
    if col.kind == "boolean":
        return (
            f"CASE WHEN lower({v}) IN ({_words(TRUE_WORDS)}) THEN true "
            f"WHEN lower({v}) IN ({_words(FALSE_WORDS)}) THEN false END"
        )
    if col.kind == "status":
        return f"coalesce(lower({v}), 'completed')"
    if col.kind == "tags":
        return f"list_filter(list_transform(string_split({v}, ';'), lambda x: trim(x)), lambda x: x <> '')"
    raise ValueError(f"unknown column kind {col.kind}")


def _row_checks(spec: TableSpec, present: set[str]) -> list[tuple[str, str]]:
    """(condition, reason) pairs in the documented order; the first true one quarantines the row."""
    cols = [c for c in spec.columns if c.name in present]
    checks: list[tuple[str, str]] = []
    for c in cols:
        if c.kind == "id":
            checks.append((f"{ident(c.name)} IS NULL", f"missing_key:{c.name}"))
    groups = (
        (("timestamp", "date"), "unparseable_date"),
        (("amount", "points", "quantity"), "unparseable_number"),
        (("boolean",), "unparseable_boolean"),
    )
    for kinds, reason in groups:
        for c in cols:
            if c.kind in kinds:
                bad = f"({ident(c.name)} IS NOT NULL AND {_parsed(c)} IS NULL)"
                if c.must_parse:
                    bad = f"({ident(c.name)} IS NULL OR {bad})"
                checks.append((bad, f"{reason}:{c.name}"))
    for c in cols:
        if c.kind in ("amount", "quantity"):
            checks.append((f"{_parsed(c)} < 0", f"negative_amount:{c.name}"))
    for c in cols:
        if c.kind == "status":
            checks.append((f"{_parsed(c)} NOT IN ({', '.join(lit(s) for s in STATUSES)})", "unknown_status"))
    return checks


def _case(checks: list[tuple[str, str]], otherwise: str = "NULL") -> str:
    if not checks:
        return otherwise
    whens = " ".join(f"WHEN {cond} THEN {lit(reason)}" for cond, reason in checks)
    return f"CASE {whens} ELSE {otherwise} END"


# --- reading ------------------------------------------------------------------------------------


def _read_file(con: duckdb.DuckDBPyConnection, path: Path, spec: TableSpec, idx: int):
    """Read one file into a temp table; returns (temp name, row-number expression, header, ignored).

    A CSV table's rowid is its file order (DuckDB keeps insertion order), Parquet has file_row_number.
    """
    tmp = f"_acrm_read_{idx}"
    try:
        if path.suffix.lower() == ".csv":
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {tmp} AS SELECT * FROM "
                f"read_csv({lit(str(path))}, all_varchar = true, header = true, delim = ',', "
                f"quote = '\"', escape = '\"')"
            )
            row_expr = "rowid + 1"
        else:
            row_expr = "_acrm_row"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {tmp} AS SELECT * EXCLUDE (file_row_number), "
                f"file_row_number + 1 AS _acrm_row FROM read_parquet({lit(str(path))}, file_row_number = true)"
            )
    except duckdb.Error as err:
        raise LoadError(f"{path}: cannot read the {spec.name} file: {err}") from err
    names = [r[0] for r in con.execute(f"DESCRIBE {tmp}").fetchall() if r[0] != "_acrm_row"]
    header: dict[str, str] = {}
    for name in names:
        key = name.strip().lower()
        if key in header:
            raise LoadError(f"{path}: column {key!r} appears twice in the header")
        header[key] = name
    missing = [c for c in spec.required_columns if c not in header]
    if missing:
        raise LoadError(
            f"{path}: missing required column {', '.join(repr(m) for m in missing)} "
            f"(table {spec.name} needs {', '.join(spec.required_columns)})"
        )
    known = set(spec.column_names)
    ignored = [
        original
        for key, original in header.items()
        if key not in known and not (spec.keep_custom and key.startswith("custom_"))
    ]
    return tmp, row_expr, header, ignored


def _stage_select(tmp: str, row_expr: str, header: dict[str, str], spec: TableSpec, source: str) -> str:
    """Trimmed text of every contract column (NULL when absent) plus custom columns and the raw row."""
    parts = [f"{lit(source)} AS _file", f"{row_expr} AS _row"]
    for name in spec.column_names:
        if name in header:
            parts.append(f"nullif(trim(CAST({ident(header[name])} AS VARCHAR)), '') AS {ident(name)}")
        else:
            parts.append(f"CAST(NULL AS VARCHAR) AS {ident(name)}")
    if spec.keep_custom:
        for key, original in header.items():
            if key.startswith("custom_"):
                parts.append(f"nullif(trim(CAST({ident(original)} AS VARCHAR)), '') AS {ident(key)}")
    raw = ", ".join(f"{ident(o)} := CAST({ident(o)} AS VARCHAR)" for o in header.values())
    parts.append(f"to_json(struct_pack({raw})) AS _raw" if raw else "CAST(NULL AS JSON) AS _raw")
    return f"SELECT {', '.join(parts)} FROM {tmp}"


def _infer_custom_type(con: duckdb.DuckDBPyConnection, stage: str, col: str) -> str:
    """The narrowest of BIGINT, DOUBLE, DATE, BOOLEAN that every non-empty value parses as; else VARCHAR."""
    v = ident(col)
    bools = _words(TRUE_WORDS + FALSE_WORDS)
    tests = {
        "BIGINT": f"regexp_full_match({v}, '[+-]?[0-9]+') AND try_cast({v} AS BIGINT) IS NOT NULL",
        "DOUBLE": f"try_cast({v} AS DOUBLE) IS NOT NULL",
        "DATE": f"regexp_full_match({v}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}') AND try_cast({v} AS DATE) IS NOT NULL",
        "BOOLEAN": f"lower({v}) IN ({bools})",
    }
    aggs = ", ".join(f"count(*) FILTER (WHERE {v} IS NOT NULL AND NOT ({t}))" for t in tests.values())
    fails = con.execute(f"SELECT {aggs}, count({v}) FROM {stage}").fetchone()
    if fails[-1] == 0:
        return "VARCHAR"
    return next((t for t, n in zip(tests, fails[:-1], strict=False) if n == 0), "VARCHAR")


def _custom_expr(col: str, sql_type: str) -> str:
    v = ident(col)
    if sql_type == "BOOLEAN":
        return f"lower({v}) IN ({_words(TRUE_WORDS)})"
    if sql_type == "VARCHAR":
        return v
    return f"CAST({v} AS {sql_type})"


# --- the load -----------------------------------------------------------------------------------


def _phone_map(con: duckdb.DuckDBPyConnection, classified: str, default_region: str) -> None:
    pairs = con.execute(
        f"SELECT DISTINCT phone, coalesce(upper(country), {lit(default_region)}) FROM {classified} "
        "WHERE _reason IS NULL AND phone IS NOT NULL"
    ).fetchall()
    names = ("phone", "region", "phone_e164", "phone_region", "phone_timezone", "phone_carrier")
    rows = [(raw, region, *normalise_phone(raw, region)) for raw, region in pairs]
    # An Arrow table, not executemany: that took ~0.9 ms a row (15 minutes for a million phones).
    phones = pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})  # noqa: F841
    con.execute("CREATE OR REPLACE TEMP TABLE _acrm_phones AS SELECT * FROM phones")


def load_table(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    landing_dir: Path,
    default_region: str = "RU",
) -> LoadResult:
    """Load `spec`'s files from `landing_dir` into raw.<table>; bad rows into raw.quarantine."""
    result = LoadResult(spec.name)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(RAW_SCHEMA)}")
    con.execute(QUARANTINE_DDL)
    files = discover_files(landing_dir, spec.name)
    if not files and spec.required_table:
        raise LoadError(
            f"{landing_dir}: no {spec.name} data (expected {spec.name}.csv, {spec.name}.parquet "
            f"or a folder {spec.name}/ of such files)"
        )

    selects, present = [], set()
    for idx, path in enumerate(files):
        source = path.relative_to(landing_dir).as_posix()
        tmp, row_expr, header, ignored = _read_file(con, path, spec, idx)
        result.files.append(source)
        result.ignored_columns += [f"{source}:{c}" for c in ignored]
        present |= set(header)
        selects.append(_stage_select(tmp, row_expr, header, spec, source))
    if not selects:  # an absent optional table loads as an empty table with every contract column
        selects.append(_stage_select("(SELECT 0 AS _acrm_row WHERE false)", "_acrm_row", {}, spec, ""))
    stage = "_acrm_stage"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {stage} AS {' UNION ALL BY NAME '.join(selects)}")
    for idx in range(len(files)):
        con.execute(f"DROP TABLE IF EXISTS _acrm_read_{idx}")

    custom = sorted(c for c in present if c.startswith("custom_")) if spec.keep_custom else []
    result.custom_columns = {c: _infer_custom_type(con, stage, c) for c in custom}

    # Row-level reasons, then duplicates among the rest (first in file order wins), then orphans.
    typed_cols = [f"{_parsed(c)} AS {ident(c.name)}" for c in spec.columns]
    typed_cols += [f"{_custom_expr(c, t)} AS {ident(c)}" for c, t in result.custom_columns.items()]
    reason = _case(_row_checks(spec, set(spec.column_names)))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _acrm_typed AS SELECT _file, _row, _raw, {reason} AS _reason, "
        f"{', '.join(typed_cols)} FROM {stage}"
    )
    later: list[tuple[str, str]] = []
    if spec.unique_key:
        k = ident(spec.unique_key)
        later.append(
            (
                f"{k} IS NOT NULL AND row_number() OVER (PARTITION BY {k}, _reason IS NULL ORDER BY _file, _row) > 1",
                "duplicate_key",
            )
        )
    joins = []
    for i, (col, parent, parent_col) in enumerate(spec.parents):
        if parent == "products" and not discover_files(landing_dir, "products"):
            continue  # products are optional: without them a product_id can't be checked
        alias = f"_p{i}"
        joins.append(
            f"LEFT JOIN (SELECT DISTINCT {ident(parent_col)} AS k FROM {table(RAW_SCHEMA, parent)}) {alias} "
            f"ON {alias}.k = t.{ident(col)}"
        )
        later.append((f"{alias}.k IS NULL", f"orphan:{col}"))
    final_reason = _case(later, otherwise="NULL")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _acrm_classified AS SELECT t.* REPLACE "
        f"(coalesce(t._reason, {final_reason}) AS _reason) FROM _acrm_typed t {' '.join(joins)}"
    )

    out_cols = [ident(c.name) for c in spec.columns] + [ident(c) for c in result.custom_columns]
    target = table(RAW_SCHEMA, spec.name)
    if spec.name == "customers":
        _phone_map(con, "_acrm_classified", default_region)
        phone_cols = "p.phone_e164, p.phone_region, p.phone_timezone, p.phone_carrier"
        con.execute(
            f"CREATE OR REPLACE TABLE {target} AS SELECT {', '.join('c.' + c for c in out_cols)}, {phone_cols} "
            f"FROM _acrm_classified c LEFT JOIN _acrm_phones p ON p.phone = c.phone "
            f"AND p.region = coalesce(upper(c.country), {lit(default_region)}) WHERE c._reason IS NULL"
        )
    else:
        con.execute(
            f"CREATE OR REPLACE TABLE {target} AS SELECT {', '.join(out_cols)} FROM _acrm_classified "
            "WHERE _reason IS NULL"
        )
    con.execute(f"DELETE FROM {table(RAW_SCHEMA, 'quarantine')} WHERE table_name = ?", [spec.name])
    con.execute(
        f"INSERT INTO {table(RAW_SCHEMA, 'quarantine')} SELECT {lit(spec.name)}, _file, _row, _reason, _raw, "
        "now()::TIMESTAMP FROM _acrm_classified WHERE _reason IS NOT NULL"
    )

    result.rows_read = con.execute(f"SELECT count(*) FROM {stage}").fetchone()[0]
    result.rows_loaded = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    result.reasons = dict(
        con.execute(
            "SELECT _reason, count(*) FROM _acrm_classified WHERE _reason IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    result.rows_quarantined = sum(result.reasons.values())
    for tmp in (stage, "_acrm_typed", "_acrm_classified", "_acrm_phones"):
        con.execute(f"DROP TABLE IF EXISTS {tmp}")
    return result


# --- reusing an unchanged load ------------------------------------------------------------------------

LOADS_DDL = f"""
CREATE TABLE IF NOT EXISTS {table(RAW_SCHEMA, "loads")} (
    table_name VARCHAR PRIMARY KEY,
    signature VARCHAR NOT NULL,
    result JSON NOT NULL,
    loaded_at TIMESTAMP NOT NULL
)"""
# A change to the loading code changes every signature, so an upgrade reloads everything once.
_CODE = [Path(__file__), Path(__file__).with_name("contract.py"), Path(__file__).with_name("phones.py")]


def load_signature(con: duckdb.DuckDBPyConnection, spec: TableSpec, landing_dir: Path, default_region: str) -> str:
    """What a load of `spec` depends on: its files (path, size, mtime), the loading code, the default
    region, and the loads of its parent tables (orphan checks read them)."""
    parts = [spec.name, default_region, *(hashlib.sha256(p.read_bytes()).hexdigest() for p in _CODE)]
    for path in discover_files(landing_dir, spec.name):
        stat = path.stat()
        parts.append(f"{path.relative_to(landing_dir).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}")
    for parent in sorted({p for _, p, _ in spec.parents}):
        row = con.execute(f"SELECT signature FROM {table(RAW_SCHEMA, 'loads')} WHERE table_name = ?", [parent])
        parts.append(f"{parent}={(row.fetchone() or ['never'])[0]}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load_table_if_changed(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, landing_dir: Path, default_region: str = "RU"
) -> LoadResult:
    """`load_table`, unless nothing it depends on changed since the last load: then the last result.

    The landing folder is a full snapshot and the point-in-time cut happens in dbt, so a backfill of
    many days (or a refresh with no new files) loads each table once, not once per partition.
    """
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(RAW_SCHEMA)}")
    con.execute(LOADS_DDL)
    signature = load_signature(con, spec, landing_dir, default_region)
    stored = con.execute(
        f"SELECT l.result FROM {table(RAW_SCHEMA, 'loads')} l JOIN information_schema.tables t "
        "ON t.table_schema = ? AND t.table_name = l.table_name WHERE l.table_name = ? AND l.signature = ?",
        [RAW_SCHEMA, spec.name, signature],
    ).fetchone()
    if stored is not None:
        return dataclasses.replace(LoadResult(**json.loads(stored[0])), reused=True)
    result = load_table(con, spec, landing_dir, default_region)
    con.execute(
        f"INSERT OR REPLACE INTO {table(RAW_SCHEMA, 'loads')} VALUES (?, ?, ?, now()::TIMESTAMP)",
        [spec.name, signature, json.dumps(dataclasses.asdict(result))],
    )
    return result


def load_all(db_path: Path, landing_dir: Path, default_region: str = "RU") -> list[LoadResult]:
    """Load every contract table in dependency order (used by tests and benchmarks)."""
    from acrm_pipelines.ingest.contract import TABLES

    db_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db_path), config=Settings.from_env().duckdb_config()) as con:
        return [load_table(con, spec, landing_dir, default_region) for spec in TABLES]
