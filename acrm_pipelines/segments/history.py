"""Membership history as a snapshot and a changelog: storage grows with members and changes, not days × members.

`segments.snapshots` holds each segment's membership on its first evaluated date as a sparse bitset over
the stable customer index (snapshots.py): O(members) bytes, not one row per member. `segments.changes`
has one row per customer who entered, exited or changed arm in a segment on each later evaluated date.
Who is a member on a day (the snapshot updated by each customer's latest change up to it) is read through
members.py, the one public reader, which also holds the views `segments.changelog` and `segments.membership`.
`segments.evaluations` has one row per segment and evaluated date: size, entered, exited, arms.

Recording a segment's first date writes its snapshot. Recording the day after the latest one (the
nightly case) diffs bitsets against the last membership kept as bits over the customer index (state.py),
and only appends the changes. Recording any other date (a backfill, a re-run) rewrites the changes on
that date and on the next evaluated date (or, for a date before the first one, moves the snapshot to it
and turns the old first date into changes), so every other date keeps the membership it had. The
memberships of the dates around it come from the states kept (state.py) when there, else are rebuilt from
the snapshot and the changes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from acrm_pipelines.segments import members, snapshots, state
from acrm_pipelines.segments.evaluate import Evaluation, Fixed
from acrm_pipelines.segments.members import EXIT, latest_changes_sql, members_at

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
    *members.VIEWS,
]
# `segment_key` among a list parameter (list_contains(?, segment_key) is far slower on large lists).
IN_KEYS = "segment_key IN (SELECT unnest(?::VARCHAR[]))"


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
    kept = state.days(con, keys)
    # The states of the dates around d that are kept (a missing or damaged one is rebuilt from the changelog).
    before = state.load(con, {k: bounds[k][0] for k in keys if bounds[k][0] in kept[k]})
    after = state.load(con, {k: bounds[k][1] for k in keys if bounds[k][1] in kept[k]})
    # The latest date, d new and the day before's state there (or a first day): a diff of bits, appended.
    latest = [k for k in keys if bounds[k][1] is None and not bounds[k][2]]
    fast = [k for k in latest if k in before or bounds[k][0] is None]
    fast_keys = set(fast)
    general = [k for k in keys if k not in fast_keys]
    first = [k for k in fast if bounds[k][0] is None]  # never evaluated: the snapshot
    nightly = [k for k in fast if bounds[k][0] is not None]
    counts = _record_first(con, evaluation, first, space) if first else {}
    if nightly:
        counts |= _record_forward(con, evaluation, nightly, space, before)
    if general:
        counts |= _record_general(con, evaluation, general, bounds, space, (before, after))
    _save_states(con, evaluation, keys, space)
    state.retain(con, {k: {d} | ({bounds[k][1]} if bounds[k][1] else set()) for k in keys})
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
    placed: dict[str, np.ndarray] = field(default_factory=dict)
    ids: pa.Array | None = None  # customer_id by index
    inverse: np.ndarray | None = None

    def bits_of(self, evaluation: Evaluation, key: str) -> np.ndarray:
        """A segment's bits over the index, placed once (a recording reads them up to three times)."""
        if self.identity:
            return evaluation.bits[key]
        if key not in self.placed:
            self.placed[key] = self.to_index(evaluation.bits[key], evaluation.n)
        return self.placed[key]

    def ids_of(self, con: duckdb.DuckDBPyConnection, evaluation: Evaluation) -> pa.Array:
        """customer_id by index, so that change rows need no join (read once when rows are not the index)."""
        if self.identity:
            return evaluation.ids
        if self.ids is None:
            by_index = con.sql(f"SELECT customer_id FROM {SCHEMA}.customer_index ORDER BY idx").to_arrow_table()
            self.ids = by_index.column(0).combine_chunks()
        return self.ids

    def to_index(self, bits: np.ndarray, n: int) -> np.ndarray:
        if self.identity:
            return bits
        if self.inverse is None:  # index -> row, or n (a bit that is never set) for customers not evaluated
            self.inverse = np.full(self.size, n, dtype=np.int32 if n < 2**31 else np.int64)
            self.inverse[self.row_index] = np.arange(n)
        member = np.zeros(n + 1, dtype=bool)
        member[:n] = np.unpackbits(bits, count=n).view(bool)
        return np.packbits(member[self.inverse])  # a gather: twice as fast as scattering the members

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
    first = con.execute(f"SELECT coalesce(max(idx) + 1, 0) FROM {SCHEMA}.customer_index").fetchall()[0][0]
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
    """Keep the membership of each key on this date as bits over the customer index, for the next diffs."""
    bits = {key: space.bits_of(evaluation, key) for key in keys}
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
        bits = space.bits_of(evaluation, key)
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

    def __init__(self, con: duckdb.DuckDBPyConnection, d: date, ids: pa.Array):
        self.con, self.d = con, d
        self.ids = ids  # customer_id by index (_Space.ids_of): no join needed
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
        changes = changes.append_column("customer_id", self.ids.take(pa.array(idx)))
        self.con.execute(
            f"""INSERT INTO {SCHEMA}.changes
            SELECT segment_key::VARCHAR, customer_id, ?, kind::VARCHAR, arm FROM changes""",
            [self.d],
        )
        self.parts, self.rows = [], 0


@dataclass
class _Members:
    """A segment's membership as bits over the customer index, and each member's arm (`names[codes[i]]`;
    codes None when the segment has no arms)."""

    bits: np.ndarray
    names: list[str | None]
    codes: np.ndarray | None


def _empty(nbytes: int) -> _Members:
    return _Members(np.zeros(nbytes, dtype=np.uint8), [], None)


def _now(evaluation: Evaluation, key: str, space: _Space, nbytes: int) -> _Members:
    bits = _pad(space.bits_of(evaluation, key), nbytes)
    if key not in evaluation.arm_codes:
        return _Members(bits, [], None)
    return _Members(bits, list(evaluation.arm_names[key]), space.codes_to_index(evaluation.arm_codes[key]))


def _kept(kept: state.State, nbytes: int) -> _Members:
    """A kept state over the index as it is now (customers added to the index since are not members)."""
    bits, names, codes = kept
    if codes is not None and len(codes) < nbytes * 8:
        codes = np.concatenate([codes, np.full(nbytes * 8 - len(codes), -1, dtype=np.int32)])
    return _Members(_pad(bits, nbytes), names, codes)


def _diff(appender: _Appender, key: str, prev: _Members, cur: _Members) -> tuple[int, int]:
    """Append the changes from `prev` to `cur` (exits, entries with their arm, arm changes of those who
    stay); returns (entered, exited)."""
    changed = _set_bits(cur.bits ^ prev.bits)  # one pass; then the side of each change from cur's bit
    now_in = ((cur.bits[changed >> 3] >> (7 - (changed & 7))) & 1).astype(bool)
    entered, exited = changed[now_in], changed[~now_in]
    names = np.array(cur.names, dtype=object)
    appender.add(key, exited, None, "exit")
    appender.add(key, entered, names[cur.codes[entered]] if cur.codes is not None else None, "enter")
    if cur.codes is not None and prev.codes is not None and len(prev.names):
        stay = _set_bits(cur.bits & prev.bits)
        moved = stay[np.array(prev.names, dtype=object)[prev.codes[stay]] != names[cur.codes[stay]]]
        appender.add(key, moved, names[cur.codes[moved]], "rearm")
    return len(entered), len(exited)


def _record_forward(
    con: duckdb.DuckDBPyConnection, evaluation: Evaluation, keys: Sequence[str], space: _Space, states: dict
) -> dict[str, tuple[int, int]]:
    appender = _Appender(con, evaluation.as_of, space.ids_of(con, evaluation))
    nbytes = (space.size + 7) // 8
    counts: dict[str, tuple[int, int]] = {}
    for key in keys:
        counts[key] = _diff(appender, key, _kept(states[key], nbytes), _now(evaluation, key, space, nbytes))
    appender.flush()
    return counts


# --- any other date: rewrite the changes on d and on the next evaluated date -------------------------------
# (a date before every evaluated one takes the snapshot: the old first date becomes changes from it)
# The memberships of the dates around d are rebuilt as bits from the snapshot and the latest change of each
# changed customer (O(words + changes) rows read, not one row per member), then diffed as the nightly is.

GENERAL_CHUNK = 200  # segments rebuilt at a time: at 10M customers, ~250 MB of bits for the two dates


def _memberships(con: duckdb.DuckDBPyConnection, days: dict[str, date | None], size: int) -> dict[str, _Members]:
    """The membership of each segment on its day (as `members.members_sql` reads it), for the days not None."""
    nbytes = (size + 7) // 8
    known = [(k, day) for k, day in days.items() if day is not None]
    if not known:
        return {}
    wanted = pa.table(  # noqa: F841 - read by DuckDB through the variable name
        {
            "k": pa.array(range(len(known)), pa.int32()),
            "segment_key": pa.array([k for k, _ in known], pa.string()),
            "day": pa.array([day for _, day in known], pa.date32()),
        }
    )
    con.execute("CREATE OR REPLACE TEMP TABLE _acrm_wanted AS SELECT * FROM wanted")
    snap = con.sql(
        f"""SELECT w.k, s.arm, s.pos, s.bits FROM {snapshots.TABLE} s
        JOIN _acrm_wanted w ON s.segment_key = w.segment_key AND s.as_of <= w.day"""
    ).to_arrow_table()
    last = con.sql(
        f"""SELECT w.k, i.idx, l.kind = '{EXIT}' AS gone, l.arm FROM ({latest_changes_sql("_acrm_wanted")}) l
        JOIN _acrm_wanted w USING (segment_key) JOIN {SCHEMA}.customer_index i USING (customer_id)"""
    ).to_arrow_table()
    con.execute("DROP TABLE _acrm_wanted")
    names, snap_arm, last_arm = _arm_codes(snap.column("arm"), last.column("arm"))
    snap_k, last_k = _column(snap, "k"), _column(last, "k")
    pos, words = _column(snap, "pos"), snap.column("bits")
    is_word = ~np.asarray(words.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    words = np.asarray(words.fill_null(0).to_numpy(), dtype=np.uint64) if len(snap) else np.zeros(0, np.uint64)
    idx, gone = _column(last, "idx"), np.asarray(last.column("gone").to_numpy(zero_copy_only=False), dtype=bool)
    snap_rows, last_rows = _rows_by(snap_k, len(known)), _rows_by(last_k, len(known))
    out = {}
    for k, (key, _) in enumerate(known):
        s, c = snap_rows[k], last_rows[k]
        w, single = s[is_word[s]], s[~is_word[s]]
        has_arms = bool((snap_arm[s] >= 0).any() or (last_arm[c] >= 0).any())
        # The words are the bitset itself (most significant bit first, at a multiple of 64): placed, not
        # expanded. The arms of a word share its position, so they are or-ed.
        placed = np.zeros((size + snapshots.WORD - 1) // snapshots.WORD, dtype=np.uint64)
        if has_arms:
            np.bitwise_or.at(placed, pos[w] // snapshots.WORD, words[w])
        else:
            placed[pos[w] // snapshots.WORD] = words[w]
        member = np.unpackbits(placed.astype(">u8").view(np.uint8), count=size).view(bool)
        member[pos[single]] = True
        codes = None
        if has_arms:  # each member's arm: the words expanded (segments with arms only)
            codes = np.full(size, -1, dtype=np.int32)
            rows, cols = np.nonzero(np.unpackbits(words[w].astype(">u8").view(np.uint8).reshape(-1, 8), axis=1))
            codes[pos[w][rows] + cols] = snap_arm[w][rows]
            codes[pos[single]] = snap_arm[single]
        member[idx[c][gone[c]]] = False
        member[idx[c][~gone[c]]] = True
        if codes is not None:  # the latest arm that is not null (coalesce over the snapshot's)
            armed = c[last_arm[c] >= 0]
            codes[idx[armed]] = last_arm[armed]
        out[key] = _Members(_pad(np.packbits(member), nbytes), names, codes)
    return out


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(), dtype=np.int64) if len(table) else np.zeros(0, np.int64)


def _rows_by(k: np.ndarray, n: int) -> list[np.ndarray]:
    """The row numbers of each value 0..n-1 of `k`."""
    order = np.argsort(k, kind="stable")
    bounds = np.searchsorted(k[order], np.arange(n + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n)]


def _arm_codes(*columns: pa.ChunkedArray) -> tuple[list[str | None], ...]:
    """One list of arm names for the columns, and each column as codes into it (-1 where null)."""
    names = sorted({a for col in columns for a in col.unique().to_pylist() if a is not None})
    lookup = pa.array(names, pa.string())
    codes = [
        np.asarray(pc.index_in(col, value_set=lookup).fill_null(-1).to_numpy(), dtype=np.int64)
        if len(col)
        else np.zeros(0, np.int64)
        for col in columns
    ]
    return (names, *codes)


def _record_general(
    con: duckdb.DuckDBPyConnection,
    evaluation: Evaluation,
    keys: Sequence[str],
    bounds: dict[str, tuple],
    space: _Space,
    kept: tuple[dict[str, state.State], dict[str, state.State]],
) -> dict[str, tuple[int, int]]:
    counts: dict[str, tuple[int, int]] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), GENERAL_CHUNK):
        counts |= _rewrite(con, evaluation, ordered[start : start + GENERAL_CHUNK], bounds, space, kept)
    return counts


def _around(
    con: duckdb.DuckDBPyConnection,
    keys: Sequence[str],
    days: dict[str, date | None],
    kept: dict[str, state.State],
    size: int,
) -> dict[str, _Members]:
    """The membership of each key on its day: its kept state, else rebuilt from the changelog."""
    nbytes = (size + 7) // 8
    out = {k: _kept(kept[k], nbytes) for k in keys if days[k] is not None and k in kept}
    return out | _memberships(con, {k: days[k] for k in keys if k not in out}, size)


def _keep_rebuilt(con: duckdb.DuckDBPyConnection, days: dict[str, date], members: dict[str, _Members]) -> None:
    """Keep the rebuilt memberships of the next dates as states: a backfill's next day needs them again."""
    for day in set(days.values()):
        keys = [k for k, d in days.items() if d == day]
        arms = {k: (members[k].names, members[k].codes) for k in keys if members[k].codes is not None}
        state.save(con, day, {k: members[k].bits for k in keys}, arms)


def _rewrite(
    con: duckdb.DuckDBPyConnection,
    evaluation: Evaluation,
    keys: Sequence[str],
    bounds: dict[str, tuple],
    space: _Space,
    kept: tuple[dict[str, state.State], dict[str, state.State]],
) -> dict[str, tuple[int, int]]:
    d, nbytes = evaluation.as_of, (space.size + 7) // 8
    before = _around(con, keys, {k: bounds[k][0] for k in keys}, kept[0], space.size)
    later = _around(con, keys, {k: bounds[k][1] for k in keys}, kept[1], space.size)  # before anything changes
    _keep_rebuilt(con, {k: bounds[k][1] for k in later if k not in kept[1]}, later)
    nexts = [(k, bounds[k][1]) for k in keys if bounds[k][1] is not None]
    con.execute(f"DELETE FROM {SCHEMA}.changes WHERE as_of = ? AND {IN_KEYS}", [d, list(keys)])
    if nexts:  # the next date now changes from d's membership, not from the old one
        pairs = pa.table(  # noqa: F841 - read by DuckDB through the variable name
            {"segment_key": [k for k, _ in nexts], "as_of": pa.array([n for _, n in nexts], pa.date32())}
        )
        con.execute(
            f"DELETE FROM {SCHEMA}.changes c USING pairs p WHERE c.segment_key = p.segment_key AND c.as_of = p.as_of"
        )
    first = [k for k in keys if bounds[k][0] is None]  # nothing earlier: d is (now) the first date
    if first:  # the snapshot moves to d (from d itself, or from the next date, which becomes changes below)
        con.execute(f"DELETE FROM {snapshots.TABLE} WHERE {IN_KEYS}", [first])
        _record_first(con, evaluation, first, space)
    ids = space.ids_of(con, evaluation)
    today, appenders = _Appender(con, d, ids), {}
    counts, next_counts = {}, []
    for key in keys:
        now = _now(evaluation, key, space, nbytes)
        if bounds[key][0] is None:
            counts[key] = (evaluation.size(key), 0)
        else:
            counts[key] = _diff(today, key, before.get(key, _empty(nbytes)), now)
        nxt = bounds[key][1]
        if nxt is not None:
            appender = appenders.setdefault(nxt, _Appender(con, nxt, ids))
            next_counts.append((key, nxt, *_diff(appender, key, now, later[key])))
    for appender in (today, *appenders.values()):
        appender.flush()
    if next_counts:
        updated = pa.table(  # noqa: F841 - read by DuckDB through the variable name
            {
                "segment_key": [r[0] for r in next_counts],
                "as_of": pa.array([r[1] for r in next_counts], pa.date32()),
                "entered": [r[2] for r in next_counts],
                "exited": [r[3] for r in next_counts],
            }
        )
        con.execute(
            f"""UPDATE {SCHEMA}.evaluations e SET entered = u.entered, exited = u.exited FROM updated u
            WHERE e.segment_key = u.segment_key AND e.as_of = u.as_of"""
        )
    return counts


# --- reading ----------------------------------------------------------------------------------------------


def fixed_membership(con: duckdb.DuckDBPyConnection, key: str, day: date) -> Fixed:
    rows = members_at(con, key, day)
    arms = [a for _, a in rows]
    return Fixed([c for c, _ in rows], arms if any(a is not None for a in arms) else None)
