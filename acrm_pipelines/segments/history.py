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
    """Store the membership of `keys` on `evaluation.as_of`; returns size, entered and exited per key."""
    ensure_tables(con)
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
    # The evaluation rows.
    now = datetime.now().replace(microsecond=0)
    out: dict[str, Recorded] = {}
    prev = dict(con.execute("SELECT segment_key, prev FROM _acrm_bounds").fetchall())
    for key in keys:
        entered, exited = changes[key]
        arms = evaluation.arm_sizes(key)
        out[key] = Recorded(key, evaluation.size(key), entered, exited, arms, prev.get(key))
    con.execute(
        f"DELETE FROM {SCHEMA}.evaluations WHERE as_of = ? AND segment_key IN (SELECT segment_key FROM _acrm_keys)",
        [d],
    )
    con.executemany(
        f"INSERT INTO {SCHEMA}.evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (k, d, versions.get(k, ""), r.size, r.entered, r.exited, json.dumps(r.arms) if r.arms else None, now)
            for k, r in out.items()
        ],
    )
    _recount_next(con)
    for tmp in ("_acrm_new", "_acrm_keys", "_acrm_bounds", "_acrm_prev", "_acrm_overlap"):
        con.execute(f"DROP TABLE IF EXISTS {tmp}")
    return out


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
