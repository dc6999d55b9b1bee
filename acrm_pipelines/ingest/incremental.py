"""Whether a table's load is kept, appended to, or redone in full; the last one of each is in raw.loads.

The landing folder is a full snapshot and the point-in-time cut happens in dbt, so a load is kept as it
was when nothing it depends on changed (a backfill of many days loads each table once). When the only
change is new files that sort after every loaded one (a day's `part-…` files), only those are read and
appended: the result equals a full load of the folder, as long as nothing an earlier row's verdict
depended on moved. Anything else (a loaded file changed or gone, a new file sorting before an old one,
a parent reloaded in full, a parent row an old orphan was missing, a custom column changing type) is a
full reload, and `full_reason` says why. Each load is one transaction with its raw.loads row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from acrm_pipelines.ingest.contract import TableSpec
from acrm_pipelines.ingest.loader import (
    RAW_SCHEMA,
    AppendRefused,
    LoadResult,
    Previous,
    checked_parents,
    discover_files,
    stage_files,
    write_staged,
)
from acrm_pipelines.sql import ident, table

LOADS = table(RAW_SCHEMA, "loads")
LOADS_DDL = f"""
CREATE TABLE IF NOT EXISTS {LOADS} (
    table_name VARCHAR PRIMARY KEY,
    signature VARCHAR NOT NULL,
    result JSON NOT NULL,
    loaded_at TIMESTAMP NOT NULL
)"""
# base: the signature of the table's last full load (children compare it); state: what an append checks.
_LOADS_COLUMNS = ("base VARCHAR", "state JSON")
# A change to the loading code changes every signature, so an upgrade reloads everything once.
_CODE = [
    Path(__file__),
    Path(__file__).with_name("loader.py"),
    Path(__file__).with_name("contract.py"),
    Path(__file__).with_name("phones.py"),
]


def _code_hash() -> str:
    return hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).digest() for p in _CODE)).hexdigest()


def _stamps(spec: TableSpec, landing_dir: Path) -> dict[str, str]:
    """Each file of the table (empty ones too) -> "size:mtime_ns"."""
    stamps = {}
    for path in discover_files(landing_dir, spec.name):
        stat = path.stat()
        stamps[path.relative_to(landing_dir).as_posix()] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return stamps


def _base_of(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    row = con.execute(f"SELECT base FROM {LOADS} WHERE table_name = ?", [name]).fetchone()
    return row[0] if row else None


def load_signature(con: duckdb.DuckDBPyConnection, spec: TableSpec, landing_dir: Path, default_region: str) -> str:
    """What a load of `spec` depends on: its files (path, size, mtime), the loading code, the default
    region, and the loads of its parent tables (orphan checks read them)."""
    parts = [spec.name, default_region, _code_hash()]
    parts += [f"{source}:{stamp}" for source, stamp in _stamps(spec, landing_dir).items()]
    for parent in sorted({p for _, p, _ in spec.parents}):
        row = con.execute(f"SELECT signature FROM {LOADS} WHERE table_name = ?", [parent])
        parts.append(f"{parent}={(row.fetchone() or ['never'])[0]}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _state(con: duckdb.DuckDBPyConnection, spec: TableSpec, landing_dir: Path, default_region: str) -> dict:
    parents = sorted({parent for _, _, parent, _ in checked_parents(spec, landing_dir)})
    return {
        "files": _stamps(spec, landing_dir),
        "code": _code_hash(),
        "region": default_region,
        "parents": {p: _base_of(con, p) for p in parents},
    }


@dataclass
class _Append:
    new: list[Path]  # the files to append, in load order ([]: nothing new, keep the table)
    previous: Previous
    base: str


def _append_plan(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, landing_dir: Path, now: dict, stored: tuple | None
) -> _Append | str:
    """How to append what is new since the stored load, or why the table must be reloaded in full."""
    if stored is None or stored[2] is None:
        return "first load"
    result, base, state = LoadResult(**json.loads(stored[0])), stored[1], json.loads(stored[2])
    if (state["code"], state["region"]) != (now["code"], now["region"]):
        return "the loading code or the default region changed"
    old, files = state["files"], now["files"]
    for source, stamp in old.items():
        if files.get(source) != stamp:
            return f"{source} {'changed' if source in files else 'is gone'} since it was loaded"
    new = sorted(set(files) - set(old))
    last = max(old, default="")
    if new and new[0] < last:  # file order is load order: a duplicate's first row must stay first
        return f"{new[0]} sorts before {last}, which is loaded"
    if set(state["parents"]) != set(now["parents"]):  # products arrived (or went): product_id checks change
        return "the parent tables its rows are checked against changed"
    if state["parents"] != now["parents"]:
        return "a parent table was reloaded in full"
    for _, col, parent, parent_col in checked_parents(spec, landing_dir):
        found = con.execute(
            f"SELECT count(*) FROM {table(RAW_SCHEMA, parent)} WHERE CAST({ident(parent_col)} AS VARCHAR) IN "
            f"(SELECT value FROM {table(RAW_SCHEMA, 'load_orphans')} WHERE table_name = ? AND column_name = ?)",
            [spec.name, col],
        ).fetchone()[0]
        if found:
            return f"{found} {parent} row(s) arrived that quarantined {spec.name} rows were missing ({col})"
    previous = Previous(result, state["custom_fails"])
    return _Append([landing_dir / source for source in new], previous, base)


def load_table_if_changed(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, landing_dir: Path, default_region: str = "RU"
) -> LoadResult:
    """The table's last load when nothing it depends on changed; else the new files appended to it when
    that equals a full load (see the module's docstring); else a full load. One transaction."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(RAW_SCHEMA)}")
    con.execute(LOADS_DDL)
    for column in _LOADS_COLUMNS:
        con.execute(f"ALTER TABLE {LOADS} ADD COLUMN IF NOT EXISTS {column}")
    signature = load_signature(con, spec, landing_dir, default_region)
    stored = con.execute(
        f"SELECT l.result, l.base, l.state, l.signature FROM {LOADS} l JOIN information_schema.tables t "
        "ON t.table_schema = ? AND t.table_name = l.table_name WHERE l.table_name = ?",
        [RAW_SCHEMA, spec.name],
    ).fetchone()
    if stored is not None and stored[3] == signature:
        return dataclasses.replace(LoadResult(**json.loads(stored[0])), reused=True, appended_files=[])
    now = _state(con, spec, landing_dir, default_region)
    plan = _append_plan(con, spec, landing_dir, now, stored)
    staged, base = None, signature
    if isinstance(plan, _Append) and plan.new:
        try:
            staged, base = stage_files(con, spec, landing_dir, plan.previous, plan.new), plan.base
        except AppendRefused as refused:
            plan = str(refused)
    if isinstance(plan, str):
        staged = stage_files(con, spec, landing_dir)
    # What this load added to the last one, so that its GX check validates only the new rows.
    appended = {}
    if isinstance(plan, _Append):
        appended = {"appended": {"after": stored[3], "rows_before": plan.previous.result.rows_loaded}}
    con.execute("BEGIN TRANSACTION")
    try:
        if staged is None:  # nothing new, e.g. only a parent grew: the rows stand as they are
            result = dataclasses.replace(plan.previous.result, reused=True, appended_files=[])
            fails, base = plan.previous.custom_fails, plan.base
        else:
            result, fails = write_staged(con, spec, landing_dir, default_region, staged), staged.custom_fails
            result.full_reason = plan if isinstance(plan, str) else ""
        con.execute(
            f"INSERT OR REPLACE INTO {LOADS} (table_name, signature, result, loaded_at, base, state) "
            "VALUES (?, ?, ?, now()::TIMESTAMP, ?, ?)",
            [
                spec.name,
                signature,
                json.dumps(dataclasses.asdict(result)),
                base,
                json.dumps({**now, "custom_fails": fails, **appended}),
            ],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return result
