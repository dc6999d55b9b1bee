"""Membership history as validity intervals: storage grows with entries and exits, not days × members.

`segments.membership` holds one row per stretch of days a customer spent in a segment (and arm):
member on day `d` when `valid_from <= d` and (`valid_to` is null or `d < valid_to`). Interval ends are
evaluation dates, so a day between two evaluations reads the earlier one. `segments.evaluations` has
one row per segment and evaluated date with its size and the entered / exited counts against the
previous evaluated date.

Recording date `d` replaces membership on `[d, next evaluated date)` only, so a backfill of a past date
leaves later dates as they were; adjacent stretches with the same arm are merged back into one row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import duckdb
import numpy as np
import pyarrow as pa

from acrm_pipelines.segments.evaluate import Evaluation, Fixed

SCHEMA = "segments"
FAR = "DATE '9999-12-31'"

DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.membership (
        segment_key VARCHAR NOT NULL, customer_id VARCHAR NOT NULL, arm VARCHAR,
        valid_from DATE NOT NULL, valid_to DATE)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.evaluations (
        segment_key VARCHAR NOT NULL, as_of DATE NOT NULL, version VARCHAR NOT NULL, size BIGINT NOT NULL,
        entered BIGINT NOT NULL, exited BIGINT NOT NULL, arms JSON, evaluated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (segment_key, as_of))""",
    # A stable number per customer, so that day-to-day membership bitsets line up.
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.customer_index (customer_id VARCHAR PRIMARY KEY, idx BIGINT NOT NULL)",
    # The latest recorded membership of each segment as bits over customer_index (and arm codes).
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.state (
        segment_key VARCHAR PRIMARY KEY, as_of DATE NOT NULL, bits BLOB NOT NULL, arm_names JSON, arm_codes BLOB)""",
]


@dataclass(frozen=True)
class Recorded:
    key: str
    size: int
    entered: int
    exited: int
    arms: dict[str, int]
    previous: date | None


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        con.execute(statement)


def _new_members(evaluation: Evaluation, keys: Sequence[str]) -> pa.Table:
    seg_col, id_col, arm_col = [], [], []
    for key in keys:
        mask = evaluation.mask(key)
        ids = evaluation.customer_ids[mask]
        seg_col.append(np.full(len(ids), key, dtype=object))
        id_col.append(ids)
        if key in evaluation.arm_codes:
            names = np.array(evaluation.arm_names[key], dtype=object)
            arm_col.append(names[evaluation.arm_codes[key][mask]])
        else:
            arm_col.append(np.full(len(ids), None, dtype=object))

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.array([], dtype=object)

    return pa.table(
        {
            "segment_key": pa.array(cat(seg_col), pa.string()),
            "customer_id": pa.array(cat(id_col), pa.string()),
            "arm": pa.array(cat(arm_col), pa.string()),
        }
    )


def record(
    con: duckdb.DuckDBPyConnection,
    evaluation: Evaluation,
    keys: Sequence[str],
    versions: dict[str, str],
) -> dict[str, Recorded]:
    """Store the membership of `keys` on `evaluation.as_of`; returns size, entered and exited per key.

    The nightly case (a date after every recorded one) diffs bitsets against the stored state of the
    previous date and writes only entries and exits; any other date takes the general SQL path.
    """
    ensure_tables(con)
    d = evaluation.as_of
    space = _index_space(con, evaluation)
    bounds = _bounds(con, keys, d)
    states = dict(con.execute(f"SELECT segment_key, as_of FROM {SCHEMA}.state").fetchall())
    fast = [k for k in keys if bounds[k][1] is None and not bounds[k][2] and states.get(k) == bounds[k][0]]
    general = [k for k in keys if k not in set(fast)]
    changes = _record_forward(con, evaluation, fast, space) if fast else {}
    if general:
        changes |= _record_general(con, evaluation, general)
    _save_states(con, evaluation, [k for k in keys if bounds[k][1] is None], space)
    now = datetime.now().replace(microsecond=0)
    out: dict[str, Recorded] = {}
    for key in keys:
        entered, exited = changes.get(key, (0, 0))
        out[key] = Recorded(key, evaluation.size(key), entered, exited, evaluation.arm_sizes(key), bounds[key][0])
    con.execute(f"DELETE FROM {SCHEMA}.evaluations WHERE as_of = ? AND list_contains(?, segment_key)", [d, list(keys)])
    con.executemany(
        f"INSERT INTO {SCHEMA}.evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (k, d, versions.get(k, ""), r.size, r.entered, r.exited, json.dumps(r.arms) if r.arms else None, now)
            for k, r in out.items()
        ],
    )
    return out


@dataclass
class _Space:
    """The evaluation's rows placed in the stable customer index."""

    row_index: np.ndarray
    size: int
    identity: bool  # row i is customer index i: bitsets need no re-mapping

    def to_index(self, bits: np.ndarray, n: int) -> np.ndarray:
        if self.identity:
            return bits
        mask = np.zeros(self.size, dtype=bool)
        mask[self.row_index[np.unpackbits(bits, count=n).view(bool)]] = True
        return np.packbits(mask)

    def codes_to_index(self, codes: np.ndarray) -> np.ndarray:
        if self.identity:
            return codes
        out = np.full(self.size, -1, dtype=np.int16)
        out[self.row_index] = codes
        return out


def _index_space(con: duckdb.DuckDBPyConnection, evaluation: Evaluation) -> _Space:
    """Give customers new to the index the next numbers (in the evaluation's row order)."""
    row_index = evaluation.row_index.copy()
    new_rows = np.flatnonzero(row_index < 0)
    first = con.execute(f"SELECT coalesce(max(idx) + 1, 0) FROM {SCHEMA}.customer_index").fetchone()[0]
    if len(new_rows):
        row_index[new_rows] = first + np.arange(len(new_rows))
        fresh = pa.table(  # noqa: F841 - read by DuckDB through the variable name
            {"customer_id": pa.array(evaluation.customer_ids[new_rows], pa.string()), "idx": row_index[new_rows]}
        )
        con.execute(f"INSERT INTO {SCHEMA}.customer_index SELECT customer_id, idx FROM fresh")
    size = int(first + len(new_rows))
    identity = len(row_index) == size and bool(np.array_equal(row_index, np.arange(size)))
    return _Space(row_index, size, identity)


def _bounds(con: duckdb.DuckDBPyConnection, keys: Sequence[str], d: date) -> dict[str, tuple]:
    """Per key: (previous evaluated date, next evaluated date, evaluated on d already)."""
    rows = con.execute(
        f"""SELECT segment_key, max(as_of) FILTER (WHERE as_of < ?), min(as_of) FILTER (WHERE as_of > ?),
            coalesce(bool_or(as_of = ?), false)
        FROM {SCHEMA}.evaluations WHERE list_contains(?, segment_key) GROUP BY 1""",
        [d, d, d, list(keys)],
    ).fetchall()
    out = dict.fromkeys(keys, (None, None, False))
    out.update({key: (prev, nxt, same) for key, prev, nxt, same in rows})
    return out


def _set_bits(packed: np.ndarray) -> np.ndarray:
    """Positions of the 1 bits, looking only at the non-zero bytes (few when little changed)."""
    nonzero = np.flatnonzero(packed)
    if not len(nonzero):
        return np.array([], dtype=np.int64)
    rows, cols = np.nonzero(np.unpackbits(packed[nonzero]).reshape(-1, 8))
    return nonzero[rows].astype(np.int64) * 8 + cols


def _pad(bits: np.ndarray, length: int) -> np.ndarray:
    return bits if len(bits) >= length else np.concatenate([bits, np.zeros(length - len(bits), dtype=np.uint8)])


def _load_states(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, tuple]:
    """key -> (bits, arm names, arm codes) of the stored states, in one query."""
    rows = con.execute(
        f"SELECT segment_key, bits, arm_names, arm_codes FROM {SCHEMA}.state WHERE list_contains(?, segment_key)",
        [list(keys)],
    ).fetchall()
    return {
        key: (
            np.frombuffer(bits, dtype=np.uint8),
            json.loads(names) if names else [],
            np.frombuffer(codes, dtype=np.int16) if codes is not None else None,
        )
        for key, bits, names, codes in rows
    }


class _Delta:
    """Entries, exits and arm changes, written in chunks so that a first day of millions stays small."""

    CHUNK = 5_000_000

    def __init__(self, con: duckdb.DuckDBPyConnection, d: date):
        self.con, self.d = con, d
        self.parts: list[tuple[str, np.ndarray, np.ndarray | None, str]] = []
        self.rows = 0

    def add(self, key: str, idx: np.ndarray, arms: np.ndarray | None, kind: str) -> None:
        if len(idx):
            self.parts.append((key, idx, arms, kind))
            self.rows += len(idx)
            if self.rows >= self.CHUNK:
                self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        keys = pa.array([p[0] for p in self.parts], pa.string())
        kinds = pa.array([p[3] for p in self.parts], pa.string())
        lengths = np.array([len(p[1]) for p in self.parts])
        which = np.repeat(np.arange(len(self.parts)), lengths)
        arms = np.concatenate(
            [p[2] if p[2] is not None else np.full(len(p[1]), None, dtype=object) for p in self.parts]
        )
        delta = pa.table(  # noqa: F841 - read by DuckDB through the variable name
            {
                "segment_key": pa.DictionaryArray.from_arrays(pa.array(which, pa.int32()), keys),
                "idx": pa.array(np.concatenate([p[1] for p in self.parts]), pa.int64()),
                "arm": pa.array(arms, pa.string()),
                "kind": pa.DictionaryArray.from_arrays(pa.array(which, pa.int32()), kinds),
            }
        )
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _acrm_delta AS
            SELECT x.segment_key::VARCHAR AS segment_key, i.customer_id, x.arm, x.kind::VARCHAR AS kind
            FROM delta x JOIN {SCHEMA}.customer_index i USING (idx)"""
        )
        self.con.execute(
            f"""UPDATE {SCHEMA}.membership m SET valid_to = ? FROM _acrm_delta x
            WHERE x.kind IN ('exit', 'rearm') AND m.segment_key = x.segment_key AND m.customer_id = x.customer_id
                AND m.valid_to IS NULL""",
            [self.d],
        )
        self.con.execute(
            f"""INSERT INTO {SCHEMA}.membership
            SELECT segment_key, customer_id, arm, ?, NULL FROM _acrm_delta WHERE kind IN ('enter', 'rearm')""",
            [self.d],
        )
        self.con.execute("DROP TABLE IF EXISTS _acrm_delta")
        self.parts, self.rows = [], 0


def _record_forward(
    con: duckdb.DuckDBPyConnection, evaluation: Evaluation, keys: Sequence[str], space: _Space
) -> dict[str, tuple[int, int]]:
    """Entries, exits and arm changes from bitsets; only those rows are written."""
    delta = _Delta(con, evaluation.as_of)
    counts: dict[str, tuple[int, int]] = {}
    nbytes = (space.size + 7) // 8
    states = _load_states(con, keys)
    empty = (np.zeros(0, dtype=np.uint8), [], None)
    for key in keys:
        cur = _pad(space.to_index(evaluation.bits[key], evaluation.n), nbytes)
        prev_bits, prev_names, prev_codes = states.get(key, empty)
        prev = _pad(prev_bits, nbytes)[:nbytes]
        entered = _set_bits(cur & ~prev)
        exited = _set_bits(prev & ~cur)
        counts[key] = (len(entered), len(exited))
        names = np.array(evaluation.arm_names.get(key, []), dtype=object)
        cur_codes = space.codes_to_index(evaluation.arm_codes[key]) if key in evaluation.arm_codes else None
        delta.add(key, exited, None, "exit")
        delta.add(key, entered, names[cur_codes[entered]] if cur_codes is not None else None, "enter")
        if cur_codes is not None and prev_codes is not None and len(prev_names):
            stay = _set_bits(cur & prev)
            old = np.array(prev_names, dtype=object)[prev_codes[stay]]
            rearmed = stay[old != names[cur_codes[stay]]]
            delta.add(key, rearmed, names[cur_codes[rearmed]], "rearm")
    delta.flush()
    return counts


def _save_states(con: duckdb.DuckDBPyConnection, evaluation: Evaluation, keys: Sequence[str], space: _Space) -> None:
    """Keep the latest membership of each key as bits over the customer index, for tomorrow's diff."""
    if not keys:
        return
    con.execute(f"DELETE FROM {SCHEMA}.state WHERE list_contains(?, segment_key)", [list(keys)])
    rows = []
    for key in keys:
        bits = space.to_index(evaluation.bits[key], evaluation.n)
        names = evaluation.arm_names.get(key)
        codes = space.codes_to_index(evaluation.arm_codes[key]) if key in evaluation.arm_codes else None
        rows.append(
            (
                key,
                evaluation.as_of,
                bits.tobytes(),
                json.dumps(names) if names else None,
                codes.astype(np.int16).tobytes() if codes is not None else None,
            )
        )
    con.executemany(f"INSERT INTO {SCHEMA}.state VALUES (?, ?, ?, ?, ?)", rows)


def _record_general(
    con: duckdb.DuckDBPyConnection, evaluation: Evaluation, keys: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Any date, any order (backfills, re-runs): replace [d, next evaluated date) in SQL."""
    d = evaluation.as_of
    new = _new_members(evaluation, keys)  # noqa: F841 - read by DuckDB through the variable name
    con.execute("CREATE OR REPLACE TEMP TABLE _acrm_new AS SELECT * FROM new")
    con.execute("CREATE OR REPLACE TEMP TABLE _acrm_keys (segment_key VARCHAR)")
    con.executemany("INSERT INTO _acrm_keys VALUES (?)", [(k,) for k in keys])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _acrm_bounds AS
        SELECT k.segment_key, CAST(? AS DATE) AS d,
            (SELECT max(as_of) FROM {SCHEMA}.evaluations e WHERE e.segment_key = k.segment_key AND e.as_of < ?) AS prev,
            (SELECT min(as_of) FROM {SCHEMA}.evaluations e WHERE e.segment_key = k.segment_key AND e.as_of > ?) AS next
        FROM _acrm_keys k""",
        [d, d, d],
    )
    # Entered / exited against the previous evaluated date.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _acrm_prev AS
        SELECT m.segment_key, m.customer_id FROM {SCHEMA}.membership m JOIN _acrm_bounds b USING (segment_key)
        WHERE b.prev IS NOT NULL AND m.valid_from <= b.prev AND coalesce(m.valid_to, {FAR}) > b.prev"""
    )
    changes = dict.fromkeys(keys, (0, 0))
    rows = con.execute(
        """SELECT segment_key, sum(CASE WHEN p IS NULL THEN 1 ELSE 0 END), sum(CASE WHEN n IS NULL THEN 1 ELSE 0 END)
        FROM (SELECT coalesce(n.segment_key, p.segment_key) AS segment_key, n.customer_id AS n, p.customer_id AS p
              FROM _acrm_new n FULL OUTER JOIN _acrm_prev p USING (segment_key, customer_id))
        GROUP BY 1"""
    ).fetchall()
    for key, entered, exited in rows:
        changes[key] = (int(entered or 0), int(exited or 0))
    # Replace [d, next) with the new membership; keep what lies before d and from next on.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _acrm_overlap AS
        SELECT m.*, b.d, b.next FROM {SCHEMA}.membership m JOIN _acrm_bounds b USING (segment_key)
        WHERE m.valid_from < coalesce(b.next, {FAR}) AND coalesce(m.valid_to, {FAR}) > b.d"""
    )
    con.execute(
        f"""DELETE FROM {SCHEMA}.membership m USING _acrm_overlap o
        WHERE m.segment_key = o.segment_key AND m.customer_id = o.customer_id AND m.valid_from = o.valid_from"""
    )
    con.execute(
        f"""INSERT INTO {SCHEMA}.membership
        SELECT segment_key, customer_id, arm, valid_from, d FROM _acrm_overlap WHERE valid_from < d
        UNION ALL
        SELECT segment_key, customer_id, arm, next, valid_to FROM _acrm_overlap
            WHERE next IS NOT NULL AND coalesce(valid_to, {FAR}) > next
        UNION ALL
        SELECT n.segment_key, n.customer_id, n.arm, b.d, b.next
            FROM _acrm_new n JOIN _acrm_bounds b USING (segment_key)"""
    )
    for boundary in ("d", "next"):
        _merge_at(con, boundary)
    _recount_next(con)
    for tmp in ("_acrm_new", "_acrm_keys", "_acrm_bounds", "_acrm_prev", "_acrm_overlap"):
        con.execute(f"DROP TABLE IF EXISTS {tmp}")
    return changes


def _recount_next(con: duckdb.DuckDBPyConnection) -> None:
    """After a backfill, the next evaluated date's entered / exited count against the new previous date."""
    con.execute(
        f"""UPDATE {SCHEMA}.evaluations e SET entered = c.entered, exited = c.exited
        FROM (
            SELECT b.segment_key, b.next,
                count(*) FILTER (WHERE on_next AND NOT on_d) AS entered,
                count(*) FILTER (WHERE on_d AND NOT on_next) AS exited
            FROM _acrm_bounds b
            JOIN (
                SELECT m.segment_key, m.customer_id,
                    bool_or(m.valid_from <= b.next AND coalesce(m.valid_to, {FAR}) > b.next) AS on_next,
                    bool_or(m.valid_from <= b.d AND coalesce(m.valid_to, {FAR}) > b.d) AS on_d
                FROM {SCHEMA}.membership m JOIN _acrm_bounds b USING (segment_key)
                WHERE b.next IS NOT NULL
                GROUP BY 1, 2
            ) x USING (segment_key)
            WHERE b.next IS NOT NULL
            GROUP BY 1, 2
        ) c
        WHERE e.segment_key = c.segment_key AND e.as_of = c.next"""
    )


def _merge_at(con: duckdb.DuckDBPyConnection, boundary: str) -> None:
    """Join a stretch ending at the boundary with the same customer's stretch (same arm) starting there."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _acrm_merge AS
        SELECT a.segment_key, a.customer_id, a.valid_from AS from_a, b.valid_from AS from_b, b.valid_to AS to_b
        FROM {SCHEMA}.membership a
        JOIN _acrm_bounds k ON k.segment_key = a.segment_key AND a.valid_to = k.{boundary}
        JOIN {SCHEMA}.membership b ON b.segment_key = a.segment_key AND b.customer_id = a.customer_id
            AND b.valid_from = a.valid_to AND b.arm IS NOT DISTINCT FROM a.arm"""
    )
    con.execute(
        f"""DELETE FROM {SCHEMA}.membership m USING _acrm_merge x
        WHERE m.segment_key = x.segment_key AND m.customer_id = x.customer_id AND m.valid_from = x.from_b"""
    )
    con.execute(
        f"""UPDATE {SCHEMA}.membership m SET valid_to = x.to_b FROM _acrm_merge x
        WHERE m.segment_key = x.segment_key AND m.customer_id = x.customer_id AND m.valid_from = x.from_a"""
    )
    con.execute("DROP TABLE IF EXISTS _acrm_merge")


def evaluated_dates(con: duckdb.DuckDBPyConnection, key: str) -> list[date]:
    if not _exists(con):
        return []
    rows = con.execute(f"SELECT as_of FROM {SCHEMA}.evaluations WHERE segment_key = ? ORDER BY 1", [key]).fetchall()
    return [r[0] for r in rows]


def members_at(con: duckdb.DuckDBPyConnection, key: str, day: date) -> list[tuple[str, str | None]]:
    """(customer_id, arm) of `key` on `day`, from the latest evaluation on or before it."""
    if not _exists(con):
        return []
    return con.execute(
        f"""SELECT customer_id, arm FROM {SCHEMA}.membership
        WHERE segment_key = ? AND valid_from <= ? AND coalesce(valid_to, {FAR}) > ? ORDER BY customer_id""",
        [key, day, day],
    ).fetchall()


def segments_of(con: duckdb.DuckDBPyConnection, customer_id: str, day: date) -> list[tuple[str, str | None]]:
    if not _exists(con):
        return []
    return con.execute(
        f"""SELECT segment_key, arm FROM {SCHEMA}.membership
        WHERE customer_id = ? AND valid_from <= ? AND coalesce(valid_to, {FAR}) > ? ORDER BY segment_key""",
        [customer_id, day, day],
    ).fetchall()


def fixed_membership(con: duckdb.DuckDBPyConnection, key: str, day: date) -> Fixed:
    rows = members_at(con, key, day)
    arms = [a for _, a in rows]
    return Fixed([c for c, _ in rows], arms if any(a is not None for a in arms) else None)


def _exists(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'evaluations'",
            [SCHEMA],
        ).fetchone()[0]
    )
