"""Recorded memberships of each segment as bits over the customer index, kept in `.npy` files beside the
DuckDB file and indexed by `segments.state_days` (one row per segment and day).

The states are what the next recording diffs against without rebuilding a day from the changelog: the
latest day (tomorrow's nightly starts from it), the day just recorded and the day after it (a backfill
goes forward: its next day compares with the day just recorded and with the same later day). `retain`
keeps those and drops the rest, so a nightly-only install keeps one day.

Why files: at 10M customers the states are 1,000 × 1.25 MB, and writing them into DuckDB took ~9 s a
night whatever the shape (BLOB, BIGINT[], one row per 64-bit word), reading them back ~2 s; a file is
written in ~2 s and mapped in no time. The states are only a cache: a segment whose file is missing or
damaged (its shape or its number of members not what was recorded) takes the general path of
history.py, which rebuilds the previous day from the changelog.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from acrm_pipelines.sql import table_exists

SCHEMA = "segments"
TABLE = f"{SCHEMA}.state_days"
DDL = [
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        segment_key VARCHAR NOT NULL, as_of DATE NOT NULL, file VARCHAR NOT NULL, row_number INTEGER NOT NULL,
        nbytes BIGINT NOT NULL, members BIGINT NOT NULL, arm_names JSON, arm_file VARCHAR, arm_row INTEGER,
        PRIMARY KEY (segment_key, as_of))""",
    f"DROP TABLE IF EXISTS {SCHEMA}.state",  # the BLOB states of earlier versions: a cache, so simply dropped
]
# The index of the versions that kept one state a segment: its rows move over (the files stay), so the
# first night after an upgrade still diffs against them.
OLD_TABLE = f"{SCHEMA}.state_files"
IN_KEYS = "segment_key IN (SELECT unnest(?::VARCHAR[]))"
State = tuple[np.ndarray, list[str], np.ndarray | None]  # bits, arm names, arm codes


def state_dir(con: duckdb.DuckDBPyConnection) -> Path | None:
    """`<file>.segment-state/` beside the DuckDB file; None for an in-memory database (no states kept)."""
    rows = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return Path(f"{rows[0][0]}.segment-state") if rows and rows[0][0] else None


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        con.execute(statement)
    if table_exists(con, SCHEMA, "state_files"):
        con.execute(
            f"""INSERT OR REPLACE INTO {TABLE} SELECT segment_key, as_of, file, row_number, nbytes, members,
            arm_names, arm_file, arm_row FROM {OLD_TABLE}"""
        )
        con.execute(f"DROP TABLE {OLD_TABLE}")


def days(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, set[date]]:
    """segment_key -> the days a state is kept for."""
    out: dict[str, set[date]] = {k: set() for k in keys}
    for key, day in con.execute(f"SELECT segment_key, as_of FROM {TABLE} WHERE {IN_KEYS}", [list(keys)]).fetchall():
        out[key].add(day)
    return out


def load(con: duckdb.DuckDBPyConnection, wanted: dict[str, date]) -> dict[str, State]:
    """key -> (bits, arm names, arm codes) on its day in `wanted`, for the keys whose state file for that day
    is there and intact."""
    folder = state_dir(con)
    if folder is None or not wanted:
        return {}
    pairs = pa.table(  # noqa: F841 - read by DuckDB through the variable name
        {"segment_key": pa.array(list(wanted), pa.string()), "as_of": pa.array(list(wanted.values()), pa.date32())}
    )
    rows = con.execute(
        f"""SELECT s.segment_key, file, row_number, nbytes, members, arm_names, arm_file, arm_row FROM {TABLE} s
        JOIN pairs p ON s.segment_key = p.segment_key AND s.as_of = p.as_of"""
    ).fetchall()
    files: dict[str, np.ndarray | None] = {}
    out = {}
    for key, file, row, nbytes, members, names, arm_file, arm_row in rows:
        bits = _row(folder, file, row, files)
        if bits is None or len(bits) != nbytes or int(np.bitwise_count(bits).sum()) != members:
            continue
        codes = _row(folder, arm_file, arm_row, files) if arm_file else None
        if arm_file and (codes is None or codes.dtype != np.int32):
            continue  # 16-bit codes of earlier versions overflowed past 32,767 arms: rebuilt from the changelog
        out[key] = (bits, json.loads(names) if names else [], codes)
    return out


def _row(folder: Path, file: str, row: int, opened: dict[str, np.ndarray | None]) -> np.ndarray | None:
    if file not in opened:
        try:
            opened[file] = np.load(folder / file, mmap_mode="r")
        except (OSError, ValueError):
            opened[file] = None
    matrix = opened[file]
    return None if matrix is None or row >= len(matrix) else np.asarray(matrix[row])


def save(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    bits: dict[str, np.ndarray],
    arms: dict[str, tuple[list[str], np.ndarray]],
) -> None:
    """Replace the states of `bits`' keys (all the same length) and of their arms on `as_of` (`prune` then
    removes the files no longer used, once the caller's transaction has committed)."""
    folder = state_dir(con)
    if folder is None or not bits:
        return
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(bits)
    token = f"{as_of.isoformat()}-{uuid.uuid4().hex[:12]}"
    file = _write(folder, f"bits-{token}.npy", np.stack([bits[k] for k in keys]))
    arm_keys = [k for k in keys if k in arms]
    arm_file = _write(folder, f"arms-{token}.npy", np.stack([arms[k][1] for k in arm_keys])) if arm_keys else None
    rows = pa.table(  # noqa: F841 - read by DuckDB through the variable name
        {
            "segment_key": pa.array(keys, pa.string()),
            "row_number": pa.array(range(len(keys)), pa.int32()),
            "nbytes": pa.array([len(bits[k]) for k in keys], pa.int64()),
            "members": pa.array([int(np.bitwise_count(bits[k]).sum()) for k in keys], pa.int64()),
            "arm_names": pa.array([json.dumps(arms[k][0]) if k in arms else None for k in keys], pa.string()),
            "arm_row": pa.array([arm_keys.index(k) if k in arms else None for k in keys], pa.int32()),
        }
    )
    con.execute(f"DELETE FROM {TABLE} WHERE as_of = ? AND {IN_KEYS}", [as_of, keys])
    con.execute(
        f"""INSERT INTO {TABLE} SELECT segment_key, ?, ?, row_number, nbytes, members, arm_names,
            CASE WHEN arm_row IS NULL THEN NULL ELSE ? END, arm_row FROM rows""",
        [as_of, file, arm_file],
    )


def retain(con: duckdb.DuckDBPyConnection, keep: dict[str, set[date]]) -> None:
    """Drop the states of `keep`'s keys except each key's latest day and the days given for it."""
    pairs = pa.table(  # noqa: F841 - read by DuckDB through the variable name
        {
            "segment_key": pa.array([k for k, ds in keep.items() for _ in ds], pa.string()),
            "as_of": pa.array([d for ds in keep.values() for d in ds], pa.date32()),
        }
    )
    con.execute(
        f"""DELETE FROM {TABLE} s WHERE {IN_KEYS}
        AND as_of < (SELECT max(as_of) FROM {TABLE} l WHERE l.segment_key = s.segment_key)
        AND NOT EXISTS (SELECT 1 FROM pairs p WHERE p.segment_key = s.segment_key AND p.as_of = s.as_of)""",
        [list(keep)],
    )


def prune(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the state files no committed row points at (replaced states, writes of a killed run)."""
    folder = state_dir(con)
    if folder is None or not folder.exists():
        return
    used = {f for (f,) in con.execute(f"SELECT file FROM {TABLE} UNION SELECT arm_file FROM {TABLE}").fetchall()}
    for path in [*folder.glob("*.npy"), *folder.glob(".*.tmp")]:  # replaced states, interrupted writes
        if path.name not in used:
            path.unlink(missing_ok=True)


def _write(folder: Path, name: str, matrix: np.ndarray) -> str:
    """Written under a temporary name and renamed, so a file that exists is whole."""
    tmp = folder / f".{name}.tmp"
    with tmp.open("wb") as out:
        np.save(out, matrix)
    os.replace(tmp, folder / name)
    return name
