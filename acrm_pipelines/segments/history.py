"""Membership history as a snapshot and a changelog: storage grows with members and changes, not days × members.

`segments.snapshots` holds each segment's membership on its first evaluated date as a sparse bitset over
the stable customer index (snapshots.py): O(members) bytes, not one row per member. `segments.changes`
has one row per customer who entered, exited or changed arm in a segment on each later evaluated date.
The members on day `d` are the snapshot's (when it is dated on or before `d`), updated by each customer's
latest change after it up to `d`: an exit removes them, an enter or rearm sets their arm; so a day between
two evaluations reads the earlier one. `members_sql` is the one definition of that relation; every reader
(members_at, segments_of, the exports' audience and check, the backfill's diffs) uses it.
The view `segments.changelog` shows the snapshot as entries beside the changes (one row per entry, exit
and rearm, what `segments.changes` held before snapshots), and `segments.membership` the same history as
validity intervals (`valid_from` ≤ d < `valid_to`, open when `valid_to` is null).
`segments.evaluations` has one row per segment and evaluated date: size, entered, exited, arms.

Recording a segment's first date writes its snapshot. Recording the day after the latest one (the
nightly case) diffs bitsets against the last membership kept as bits over the customer index (state.py),
and only appends the changes. Recording any other date (a backfill, a re-run) rewrites the changes on
that date and on the next evaluated date (or, for a date before the first one, moves the snapshot to it
and turns the old first date into changes), so every other date keeps the membership it had.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import duckdb
import numpy as np
import pyarrow as pa

from acrm_pipelines.segments import snapshots, state
from acrm_pipelines.segments.evaluate import Evaluation, Fixed

SCHEMA = "segments"

DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.changes (
        segment_key VARCHAR NOT NULL, customer_id VARCHAR NOT NULL, as_of DATE NOT NULL,
        kind VARCHAR NOT NULL, arm VARCHAR)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.evaluations (
        segment_key VARCHAR NOT NULL, as_of DATE NOT NULL, version VARCHAR NOT NULL, size BIGINT NOT NULL,
        entered BIGINT NOT NULL, exited BIGINT NOT NULL, arms JSON, evaluated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (segment_key, as_of))""",
    # A stable number per customer, so that day-to-day membership bitsets line up.
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.customer_index (customer_id VARCHAR PRIMARY KEY, idx BIGINT NOT NULL)",
    snapshots.DDL,
    # The snapshot as entries beside the changes: one row per entry, exit and rearm.
    f"""CREATE OR REPLACE VIEW {SCHEMA}.changelog AS
        SELECT segment_key, customer_id, as_of, kind, arm FROM {SCHEMA}.changes
        UNION ALL
        SELECT x.segment_key, i.customer_id, x.as_of, 'enter' AS kind, x.arm
        FROM ({snapshots.expand_sql(snapshots.TABLE)}) x JOIN {SCHEMA}.customer_index i ON i.idx = x.idx""",
    f"""CREATE OR REPLACE VIEW {SCHEMA}.membership AS
        SELECT segment_key, customer_id, arm, valid_from, valid_to FROM (
            SELECT segment_key, customer_id, arm, kind, as_of AS valid_from,
                lead(as_of) OVER (PARTITION BY segment_key, customer_id ORDER BY as_of) AS valid_to
            FROM {SCHEMA}.changelog)
        WHERE kind <> 'exit'""",
]
# `segment_key` among a list parameter (list_contains(?, segment_key) is far slower on large lists).
IN_KEYS = "segment_key IN (SELECT unnest(?::VARCHAR[]))"


def members_sql(days: str, customer: bool = False, source: str = snapshots.TABLE) -> str:
    """SQL of (segment_key, customer_id, arm): the members of each segment on its day, for the rows
    (segment_key, day) of the relation `days` (SQL text; its parameters come first). The one definition of
    "members of a segment on a day": every reader uses it.

    The members are the segment's snapshot (if dated on or before the day) updated by each customer's
    latest change after it, up to the day. The arm is the latest one that is not null, as `arg_max` over
    one row per entry, exit and rearm gives (the changes are all later than the snapshot). With
    `customer`, one more parameter: only that customer's rows. `source`: where the snapshots are.
    """
    who, near, index, only = "", "", f"{SCHEMA}.customer_index", ""
    if customer:
        who = f""", _one AS (SELECT ?::VARCHAR AS customer_id),
        _who AS (SELECT i.customer_id, i.idx FROM {SCHEMA}.customer_index i JOIN _one USING (customer_id))"""
        # the customer's own row, or the row of the 64 indexes holding it
        near = f"AND s.pos IN (SELECT idx FROM _who UNION ALL SELECT idx - idx % {snapshots.WORD} FROM _who)"
        index, only = "_who", "AND c.customer_id IN (SELECT customer_id FROM _one)"
    return f"""
        WITH _d AS ({days}){who},
        _s AS (
            SELECT s.* FROM {source} s JOIN _d ON s.segment_key = _d.segment_key AND s.as_of <= _d.day {near}),
        _b AS (
            SELECT x.segment_key, i.customer_id, x.arm
            FROM ({snapshots.expand_sql("_s")}) x JOIN {index} i ON i.idx = x.idx),
        _l AS (
            SELECT c.segment_key, c.customer_id, arg_max(c.kind, c.as_of) AS kind, arg_max(c.arm, c.as_of) AS arm
            FROM {SCHEMA}.changes c JOIN _d ON c.segment_key = _d.segment_key AND c.as_of <= _d.day {only}
            GROUP BY 1, 2)
        SELECT coalesce(l.segment_key, b.segment_key) AS segment_key,
            coalesce(l.customer_id, b.customer_id) AS customer_id, coalesce(l.arm, b.arm) AS arm
        FROM _b b FULL OUTER JOIN _l l ON l.segment_key = b.segment_key AND l.customer_id = b.customer_id
        WHERE coalesce(l.kind, 'enter') <> 'exit'"""


def segment_members_sql(source: str = snapshots.TABLE) -> str:
    """`members_sql` of one segment on one day: two parameters, the segment key and the day."""
    return members_sql("SELECT ?::VARCHAR AS segment_key, ?::DATE AS day", source=source)


# Members on a day, per segment in a temp table `_acrm_days (segment_key, day)`.
MEMBERS_ON_DAYS = members_sql("SELECT segment_key, day FROM _acrm_days")


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
    state.ensure(con)


def record(
    con: duckdb.DuckDBPyConnection,
    evaluation: Evaluation,
    keys: Sequence[str],
    versions: dict[str, str],
) -> dict[str, Recorded]:
    """Store the membership of `keys` on `evaluation.as_of`; returns size, entered and exited per key.

    One transaction: the changes, the evaluations, the new customer index entries and the state index
    commit together or not at all, so a run killed at any point leaves the history as it was (a re-run
    would otherwise append the same changes again). State files written before a kill are unused and
    removed by the next save.
    """
    ensure_tables(con)
    con.begin()
    try:
        out = _record(con, evaluation, keys, versions)
        con.commit()
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed commit has rolled back already
            con.rollback()
        raise
    state.prune(con)
    return out


def _record(
    con: duckdb.DuckDBPyConnection,
    evaluation: Evaluation,
    keys: Sequence[str],
    versions: dict[str, str],
) -> dict[str, Recorded]:
    d = evaluation.as_of
    space = _index_space(con, evaluation)
    bounds = _bounds(con, keys, d)
    stored = state.dates(con)
    latest = [k for k in keys if bounds[k][1] is None and not bounds[k][2] and stored.get(k) == bounds[k][0]]
    states = state.load(con, [k for k in latest if bounds[k][0] is not None])
    # The day after the state (or a first day): a diff of bits. A missing or damaged state: the general path.
    fast = [k for k in latest if k in states or bounds[k][0] is None]
    fast_keys = set(fast)
    general = [k for k in keys if k not in fast_keys]
    first = [k for k in fast if bounds[k][0] is None]  # never evaluated: the snapshot
    nightly = [k for k in fast if bounds[k][0] is not None]
    counts = _record_first(con, evaluation, first, space) if first else {}
    if nightly:
        counts |= _record_forward(con, evaluation, nightly, space, states)
    if general:
        counts |= _record_general(con, evaluation, general, bounds, space)
    _save_states(con, evaluation, [k for k in keys if bounds[k][1] is None], space)
    now = datetime.now().replace(microsecond=0)
    out: dict[str, Recorded] = {}
    for key in keys:
        entered, exited = counts[key]
        out[key] = Recorded(key, evaluation.size(key), entered, exited, evaluation.arm_sizes(key), bounds[key][0])
    con.execute(
        f"DELETE FROM {SCHEMA}.evaluations WHERE as_of = ? AND {IN_KEYS}",
        [d, list(keys)],
    )
    rows = pa.table(  # noqa: F841 - read by DuckDB through the variable name (executemany is slow)
        {
            "segment_key": list(out),
            "version": [versions.get(k, "") for k in out],
            "size": [r.size for r in out.values()],
            "entered": [r.entered for r in out.values()],
            "exited": [r.exited for r in out.values()],
            "arms": [json.dumps(r.arms) if r.arms else None for r in out.values()],
        }
    )
    con.execute(
        f"INSERT INTO {SCHEMA}.evaluations SELECT segment_key, ?, version, size, entered, exited, arms, ? FROM rows",
        [d, now],
    )
    return out


# --- the stable customer index and stored states -------------------------------------------------------


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
        out = np.full(self.size, -1, dtype=np.int32)
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
            {"customer_id": evaluation.ids.take(pa.array(new_rows)), "idx": row_index[new_rows]}
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
        FROM {SCHEMA}.evaluations WHERE {IN_KEYS} GROUP BY 1""",
        [d, d, d, list(keys)],
    ).fetchall()
    out = dict.fromkeys(keys, (None, None, False))
    out.update({key: (prev, nxt, same) for key, prev, nxt, same in rows})
    return out


def _save_states(con: duckdb.DuckDBPyConnection, evaluation: Evaluation, keys: Sequence[str], space: _Space) -> None:
    """Keep the latest membership of each key as bits over the customer index, for the next day's diff."""
    bits = {key: space.to_index(evaluation.bits[key], evaluation.n) for key in keys}
    arms = {
        key: (evaluation.arm_names[key], space.codes_to_index(evaluation.arm_codes[key]).astype(np.int32))
        for key in keys
        if key in evaluation.arm_codes
    }
    state.save(con, evaluation.as_of, bits, arms)


# --- a segment's first date: the snapshot -----------------------------------------------------------------


def _record_first(
    con: duckdb.DuckDBPyConnection, evaluation: Evaluation, keys: Sequence[str], space: _Space
) -> dict[str, tuple[int, int]]:
    """Write the snapshot of `keys` on `evaluation.as_of` (everyone enters: entered = size, exited = 0)."""
    writer = snapshots.Writer(con, evaluation.as_of)
    for key in sorted(keys):  # by key, so that a read of one segment skips the others' row groups
        bits = space.to_index(evaluation.bits[key], evaluation.n)
        if key in evaluation.arm_codes:
            codes = space.codes_to_index(evaluation.arm_codes[key])
            writer.add_arms(key, bits, evaluation.arm_names[key], codes)
        else:
            writer.add_bits(key, bits)
    writer.flush()
    return {key: (evaluation.size(key), 0) for key in keys}


# --- the nightly path: bitset diffs, appended changes ----------------------------------------------------


def _set_bits(packed: np.ndarray) -> np.ndarray:
    """Positions of the 1 bits, looking only at the non-zero bytes (few when little changed)."""
    nonzero = np.flatnonzero(packed)
    if not len(nonzero):
        return np.array([], dtype=np.int64)
    rows, cols = np.nonzero(np.unpackbits(packed[nonzero]).reshape(-1, 8))
    return nonzero[rows].astype(np.int64) * 8 + cols


def _pad(bits: np.ndarray, length: int) -> np.ndarray:
    if len(bits) >= length:
        return bits[:length]
    return np.concatenate([bits, np.zeros(length - len(bits), dtype=np.uint8)])


class _Appender:
    """Change rows by customer index, appended in chunks so that a first day of millions stays small."""

    CHUNK = 5_000_000

    def __init__(self, con: duckdb.DuckDBPyConnection, d: date, ids: pa.Array | None = None):
        self.con, self.d = con, d
        self.ids = ids  # customer_id by index when the evaluation covers the whole index: no join needed
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
        which = pa.array(np.repeat(np.arange(len(self.parts)), [len(p[1]) for p in self.parts]), pa.int32())
        arms = [p[2] if p[2] is not None else np.full(len(p[1]), None, dtype=object) for p in self.parts]
        idx = np.concatenate([p[1] for p in self.parts])
        changes = pa.table(  # noqa: F841 - read by DuckDB through the variable name
            {
                "segment_key": pa.DictionaryArray.from_arrays(which, pa.array([p[0] for p in self.parts])),
                "idx": pa.array(idx, pa.int64()),
                "kind": pa.DictionaryArray.from_arrays(which, pa.array([p[3] for p in self.parts])),
                "arm": pa.array(np.concatenate(arms), pa.string()),
            }
        )
        # Appended in segment order, so that a scan for one segment skips the other segments' row groups.
        if self.ids is not None:  # the parts are in segment order already; ids by index need no join
            changes = changes.append_column("customer_id", self.ids.take(pa.array(idx)))
            self.con.execute(
                f"""INSERT INTO {SCHEMA}.changes
                SELECT segment_key::VARCHAR, customer_id, ?, kind::VARCHAR, arm FROM changes""",
                [self.d],
            )
        else:
            self.con.execute(
                f"""INSERT INTO {SCHEMA}.changes
                SELECT x.segment_key::VARCHAR, i.customer_id, ?, x.kind::VARCHAR, x.arm
                FROM changes x JOIN {SCHEMA}.customer_index i USING (idx)
                ORDER BY 1, 2""",
                [self.d],
            )
        self.parts, self.rows = [], 0


def _record_forward(
    con: duckdb.DuckDBPyConnection, evaluation: Evaluation, keys: Sequence[str], space: _Space, states: dict
) -> dict[str, tuple[int, int]]:
    appender = _Appender(con, evaluation.as_of, evaluation.ids if space.identity else None)
    counts: dict[str, tuple[int, int]] = {}
    nbytes = (space.size + 7) // 8
    empty = (np.zeros(0, dtype=np.uint8), [], None)
    for key in keys:
        cur = _pad(space.to_index(evaluation.bits[key], evaluation.n), nbytes)
        prev_bits, prev_names, prev_codes = states.get(key, empty)
        prev = _pad(prev_bits, nbytes)
        changed = _set_bits(cur ^ prev)  # one pass; then the side of each change from today's bit
        now_in = ((cur[changed >> 3] >> (7 - (changed & 7))) & 1).astype(bool)
        entered, exited = changed[now_in], changed[~now_in]
        counts[key] = (len(entered), len(exited))
        names = np.array(evaluation.arm_names.get(key, []), dtype=object)
        codes = space.codes_to_index(evaluation.arm_codes[key]) if key in evaluation.arm_codes else None
        appender.add(key, exited, None, "exit")
        appender.add(key, entered, names[codes[entered]] if codes is not None else None, "enter")
        if codes is not None and prev_codes is not None and len(prev_names):
            stay = _set_bits(cur & prev)
            moved = stay[np.array(prev_names, dtype=object)[prev_codes[stay]] != names[codes[stay]]]
            appender.add(key, moved, names[codes[moved]], "rearm")
    appender.flush()
    return counts


# --- any other date: rewrite the changes on d and on the next evaluated date -------------------------------
# (a date before every evaluated one takes the snapshot: the old first date becomes changes from it)


def _members_table(evaluation: Evaluation, keys: Sequence[str]) -> pa.Table:
    """(segment_key as a dictionary, customer_id, arm) of every member of `keys`, built in Arrow (not as
    Python strings: at 1M customers × 1,000 segments that held ~10 GB)."""
    ids, arms, lengths = [], [], []
    for key in keys:
        rows = np.flatnonzero(evaluation.mask(key))
        ids.append(evaluation.ids.take(pa.array(rows)))
        if key in evaluation.arm_codes:
            names = evaluation.arm_names[key]
            codes = evaluation.arm_codes[key][rows]
            codes = np.where(codes < 0, codes + len(names), codes)  # names[-1], as numpy indexes the nightly path
            arms.append(pa.array(names, pa.string()).take(pa.array(codes)))
        else:
            arms.append(pa.nulls(len(rows), pa.string()))
        lengths.append(len(rows))
    which = pa.array(np.repeat(np.arange(len(lengths)), lengths).astype(np.int32))
    return pa.table(
        {
            "segment_key": pa.DictionaryArray.from_arrays(which, pa.array(list(keys), pa.string())),
            "customer_id": pa.chunked_array(ids, evaluation.ids.type),
            "arm": pa.chunked_array(arms, pa.string()),
        }
    )


DIFF = """
    SELECT coalesce(b.segment_key, a.segment_key) AS segment_key, coalesce(b.customer_id, a.customer_id) AS customer_id,
        CASE WHEN a.customer_id IS NULL THEN 'enter' WHEN b.customer_id IS NULL THEN 'exit' ELSE 'rearm' END AS kind,
        b.arm
    FROM {before} a FULL OUTER JOIN {after} b ON a.segment_key = b.segment_key AND a.customer_id = b.customer_id
    WHERE a.customer_id IS NULL OR b.customer_id IS NULL OR a.arm IS DISTINCT FROM b.arm"""


def _members_on(con: duckdb.DuckDBPyConnection, name: str, days: dict[str, date | None]) -> None:
    """A temp table `name` of the members of each segment on its day (empty when the day is None)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _acrm_days (segment_key VARCHAR, day DATE)")
    known = {k: day for k, day in days.items() if day is not None}
    rows = pa.table(  # noqa: F841 - read by DuckDB through the variable name
        {"segment_key": pa.array(list(known), pa.string()), "day": pa.array(list(known.values()), pa.date32())}
    )
    con.execute("INSERT INTO _acrm_days SELECT segment_key, day FROM rows")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {MEMBERS_ON_DAYS}")


def _record_general(
    con: duckdb.DuckDBPyConnection,
    evaluation: Evaluation,
    keys: Sequence[str],
    bounds: dict[str, tuple],
    space: _Space,
) -> dict[str, tuple[int, int]]:
    d = evaluation.as_of
    first = [k for k in keys if bounds[k][0] is None]  # nothing earlier: d is (now) the first date
    diffed = [k for k in keys if bounds[k][0] is not None]
    _members_on(con, "_acrm_before", {k: bounds[k][0] for k in keys})
    _members_on(con, "_acrm_later", {k: bounds[k][1] for k in keys})  # before anything changes
    members = _members_table(evaluation, keys)  # noqa: F841 - read by DuckDB through the variable name
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _acrm_now AS SELECT segment_key::VARCHAR AS segment_key, customer_id, arm "
        "FROM members"
    )
    con.execute(
        f"DELETE FROM {SCHEMA}.changes WHERE as_of = ? AND {IN_KEYS}",
        [d, list(keys)],
    )
    if first:  # the snapshot moves to d (from d itself, or from the next date, which becomes changes below)
        con.execute(f"DELETE FROM {snapshots.TABLE} WHERE {IN_KEYS}", [first])
        _record_first(con, evaluation, first, space)
    if diffed:
        con.execute(
            f"INSERT INTO {SCHEMA}.changes SELECT segment_key, customer_id, ?, kind, arm FROM "
            f"({DIFF.format(before='_acrm_before', after='_acrm_now')}) WHERE {IN_KEYS}",
            [d, diffed],
        )
    later = {k: bounds[k][1] for k in keys if bounds[k][1] is not None}
    for key, nxt in later.items():  # the next date now changes from d's membership, not from the old one
        con.execute(f"DELETE FROM {SCHEMA}.changes WHERE segment_key = ? AND as_of = ?", [key, nxt])
    if later:
        con.execute(
            f"""INSERT INTO {SCHEMA}.changes SELECT x.segment_key, x.customer_id, d.day, x.kind, x.arm
            FROM ({DIFF.format(before="_acrm_now", after="_acrm_later")}) x JOIN _acrm_days d USING (segment_key)"""
        )
        con.execute(
            f"""UPDATE {SCHEMA}.evaluations e SET entered = c.entered, exited = c.exited
            FROM (SELECT d.segment_key, d.day AS as_of, count(c.kind) FILTER (WHERE c.kind = 'enter') AS entered,
                    count(c.kind) FILTER (WHERE c.kind = 'exit') AS exited
                  FROM _acrm_days d LEFT JOIN {SCHEMA}.changes c ON d.segment_key = c.segment_key AND c.as_of = d.day
                  GROUP BY 1, 2) c
            WHERE e.segment_key = c.segment_key AND e.as_of = c.as_of"""
        )
    counts = dict.fromkeys(keys, (0, 0))
    rows = con.execute(
        f"""SELECT segment_key, count(*) FILTER (WHERE kind = 'enter'), count(*) FILTER (WHERE kind = 'exit')
        FROM {SCHEMA}.changes WHERE as_of = ? AND {IN_KEYS} GROUP BY 1""",
        [d, list(keys)],
    ).fetchall()
    counts.update({k: (int(e), int(x)) for k, e, x in rows})
    counts.update({k: (evaluation.size(k), 0) for k in first})
    for tmp in ("_acrm_before", "_acrm_later", "_acrm_now", "_acrm_days"):
        con.execute(f"DROP TABLE IF EXISTS {tmp}")
    return counts


# --- reading ----------------------------------------------------------------------------------------------


def evaluated_dates(con: duckdb.DuckDBPyConnection, key: str) -> list[date]:
    return evaluated_dates_of(con, [key])[key]


def evaluated_dates_of(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, list[date]]:
    """The evaluated dates of each of `keys`, oldest first, in one query (not one per segment)."""
    out: dict[str, list[date]] = {k: [] for k in keys}
    if not _exists(con) or not keys:
        return out
    rows = con.execute(
        f"SELECT segment_key, list(as_of ORDER BY as_of) FROM {SCHEMA}.evaluations WHERE {IN_KEYS} GROUP BY 1",
        [list(keys)],
    ).fetchall()
    out.update(dict(rows))
    return out


def members_at(con: duckdb.DuckDBPyConnection, key: str, day: date) -> list[tuple[str, str | None]]:
    """(customer_id, arm) of `key` on `day`, from the latest evaluation on or before it."""
    if not _exists(con):
        return []
    return con.execute(
        f"SELECT customer_id, arm FROM ({segment_members_sql(_source(con))}) ORDER BY 1",
        [key, day],
    ).fetchall()


def segments_of(con: duckdb.DuckDBPyConnection, customer_id: str, day: date) -> list[tuple[str, str | None]]:
    """(segment_key, arm) of the segments `customer_id` was in on `day`."""
    if not _exists(con):
        return []
    days = f"SELECT DISTINCT segment_key, ?::DATE AS day FROM {SCHEMA}.evaluations"
    return con.execute(
        f"SELECT segment_key, arm FROM ({members_sql(days, customer=True, source=_source(con))}) ORDER BY 1",
        [day, customer_id],
    ).fetchall()


def fixed_membership(con: duckdb.DuckDBPyConnection, key: str, day: date) -> Fixed:
    rows = members_at(con, key, day)
    arms = [a for _, a in rows]
    return Fixed([c for c, _ in rows], arms if any(a is not None for a in arms) else None)


def _source(con: duckdb.DuckDBPyConnection) -> str:
    """The snapshots table; none yet (a file last recorded before snapshots, opened read-only): no rows."""
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'snapshots'",
        [SCHEMA],
    ).fetchall()[0][0]
    return snapshots.TABLE if found else snapshots.EMPTY


def _exists(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'evaluations'",
            [SCHEMA],
        ).fetchone()[0]
    )
