"""Who is in which segment on a day: the one public reader of the segment history (history.py writes it).

Other domains (exports, the CLI) read memberships through this module only: SQL text with bound `?`
parameters (in the order each docstring gives), to run on their own DuckDB connection or join into their
own queries, or the functions below that run it. So the history's tables can change without them.

The rule, written here once: a customer is a member of a segment on day `d` when their latest row of the
history up to `d` is not an exit. The history is the segment's snapshot (its first evaluated date: everyone
enters; snapshots.py) and the changes after it (enter, exit, rearm); the arm is the latest one that is not
null. So a day between two evaluations reads the earlier one, and a day before the first reads nobody.
`latest_changes_sql` is each customer's latest change and `members_sql` adds the snapshot to it; history.py
rebuilds the same memberships as bits from `latest_changes_sql`, and `VIEWS` shows the history as rows and
as validity intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb

from acrm_pipelines.segments import snapshots
from acrm_pipelines.segments.state import IN_KEYS
from acrm_pipelines.sql import table_exists

SCHEMA = snapshots.SCHEMA
EXIT = "exit"  # the change that ends a membership (enter and rearm keep one)

VIEWS = [
    # The snapshot as entries beside the changes: one row per entry, exit and rearm.
    f"""CREATE OR REPLACE VIEW {SCHEMA}.changelog AS
        SELECT segment_key, customer_id, as_of, kind, arm FROM {SCHEMA}.changes
        UNION ALL
        SELECT x.segment_key, i.customer_id, x.as_of, 'enter' AS kind, x.arm
        FROM ({snapshots.expand_sql(snapshots.TABLE)}) x JOIN {SCHEMA}.customer_index i ON i.idx = x.idx""",
    # The rule over every day at once: a member on d when valid_from <= d < valid_to (open when null).
    f"""CREATE OR REPLACE VIEW {SCHEMA}.membership AS
        SELECT segment_key, customer_id, arm, valid_from, valid_to FROM (
            SELECT segment_key, customer_id, arm, kind, as_of AS valid_from,
                lead(as_of) OVER (PARTITION BY segment_key, customer_id ORDER BY as_of) AS valid_to
            FROM {SCHEMA}.changelog)
        WHERE kind <> '{EXIT}'""",
]


# --- SQL (run by the caller) ------------------------------------------------------------------------------


def latest_changes_sql(days: str, only: str = "") -> str:
    """SQL of (segment_key, customer_id, kind, arm): each customer's latest change up to the day, for the rows
    (segment_key, day) of the relation `days` (a table or CTE name). A member after it unless `kind` is EXIT;
    `arm` is the latest that is not null (arg_max skips nulls). `only`: more conditions on the changes `c`."""
    return f"""
        SELECT c.segment_key, c.customer_id, arg_max(c.kind, c.as_of) AS kind, arg_max(c.arm, c.as_of) AS arm
        FROM {SCHEMA}.changes c JOIN {days} _w ON c.segment_key = _w.segment_key AND c.as_of <= _w.day {only}
        GROUP BY 1, 2"""


def members_sql(days: str, customer: bool = False, source: str = snapshots.TABLE) -> str:
    """SQL of (segment_key, customer_id, arm): the members of each segment on its day, for the rows
    (segment_key, day) of the query `days` (SQL text; its parameters follow the customer's).

    The snapshot (if dated on or before the day) updated by each customer's latest change after it, up to
    the day. With `customer`, the first parameter is a customer id: only that customer's rows (and only the
    snapshot rows that can hold them). `source`: the snapshots relation (snapshots.EMPTY for a file recorded
    before snapshots).
    """
    who, near, index, only = "", "", f"{SCHEMA}.customer_index", ""
    if customer:
        who = f"""_one AS (SELECT ?::VARCHAR AS customer_id),
        _who AS (SELECT i.customer_id, i.idx FROM {SCHEMA}.customer_index i JOIN _one USING (customer_id)),"""
        # the customer's own row, or the row of the 64 indexes holding it
        near = f"AND s.pos IN (SELECT idx FROM _who UNION ALL SELECT idx - idx % {snapshots.WORD} FROM _who)"
        index, only = "_who", "AND c.customer_id IN (SELECT customer_id FROM _one)"
    return f"""
        WITH {who} _d AS ({days}),
        _s AS (
            SELECT s.* FROM {source} s JOIN _d ON s.segment_key = _d.segment_key AND s.as_of <= _d.day {near}),
        _b AS (
            SELECT x.segment_key, i.customer_id, x.arm
            FROM ({snapshots.expand_sql("_s")}) x JOIN {index} i ON i.idx = x.idx),
        _l AS ({latest_changes_sql("_d", only)})
        SELECT coalesce(l.segment_key, b.segment_key) AS segment_key,
            coalesce(l.customer_id, b.customer_id) AS customer_id, coalesce(l.arm, b.arm) AS arm
        FROM _b b FULL OUTER JOIN _l l ON l.segment_key = b.segment_key AND l.customer_id = b.customer_id
        WHERE coalesce(l.kind, 'enter') <> '{EXIT}'"""


def segment_members_sql(source: str = snapshots.TABLE) -> str:
    """SQL of (segment_key, customer_id, arm): the members of one segment on one day.
    Parameters: the segment key, the day."""
    return members_sql("SELECT ?::VARCHAR AS segment_key, ?::DATE AS day", source=source)


def arm_recorded(con: duckdb.DuckDBPyConnection, segment_key: str, day: date, arm: str) -> bool:
    """Whether any member of the segment can be in `arm` on `day`: `members_sql` takes each member's arm from
    the snapshots and changes on or before the day, so one of them must name it."""
    found = con.execute(
        f"""SELECT EXISTS (SELECT 1 FROM {snapshots.TABLE} WHERE segment_key = ? AND as_of <= ? AND arm = ?)
            OR EXISTS (SELECT 1 FROM {SCHEMA}.changes WHERE segment_key = ? AND as_of <= ? AND arm = ?)""",
        [segment_key, day, arm] * 2,
    ).fetchall()
    return bool(found[0][0])


def customer_segments_sql(source: str = snapshots.TABLE) -> str:
    """SQL of (segment_key, customer_id, arm): the segments one customer is in on one day.
    Parameters: the customer id, the day."""
    days = f"SELECT DISTINCT segment_key, ?::DATE AS day FROM {SCHEMA}.evaluations"
    return members_sql(days, customer=True, source=source)


def changes_sql(source: str = snapshots.TABLE) -> str:
    """SQL of (customer_id, kind, arm): who entered (with the arm entered), exited or changed arm in one
    segment on one day, against its evaluation before; on its first evaluated day everyone enters, on a
    day it was not evaluated nobody changes. Parameters: the segment key, the day."""
    return f"""
        WITH _d AS (SELECT ?::VARCHAR AS segment_key, ?::DATE AS day),
        _s AS (SELECT s.* FROM {source} s JOIN _d ON s.segment_key = _d.segment_key AND s.as_of = _d.day)
        SELECT c.customer_id, c.kind, c.arm
        FROM {SCHEMA}.changes c JOIN _d ON c.segment_key = _d.segment_key AND c.as_of = _d.day
        UNION ALL
        SELECT i.customer_id, 'enter' AS kind, x.arm
        FROM ({snapshots.expand_sql("_s")}) x JOIN {SCHEMA}.customer_index i ON i.idx = x.idx"""


# --- the same, run ----------------------------------------------------------------------------------------


def members_at(con: duckdb.DuckDBPyConnection, key: str, day: date) -> list[tuple[str, str | None]]:
    """(customer_id, arm) of `key` on `day`, from the latest evaluation on or before it."""
    if not table_exists(con, SCHEMA, "evaluations"):
        return []
    return con.execute(
        f"SELECT customer_id, arm FROM ({segment_members_sql(_source(con))}) ORDER BY 1", [key, day]
    ).fetchall()


def entered_at(con: duckdb.DuckDBPyConnection, key: str, day: date) -> list[tuple[str, str | None]]:
    """(customer_id, arm) of the customers who entered `key` on `day` (see `changes_sql`)."""
    return _changes(con, key, day, "enter")


def exited_at(con: duckdb.DuckDBPyConnection, key: str, day: date) -> list[str]:
    """The customers who exited `key` on `day` (see `changes_sql`)."""
    return [c for c, _ in _changes(con, key, day, EXIT)]


def segments_of(con: duckdb.DuckDBPyConnection, customer_id: str, day: date) -> list[tuple[str, str | None]]:
    """(segment_key, arm) of the segments `customer_id` was in on `day`."""
    if not table_exists(con, SCHEMA, "evaluations"):
        return []
    return con.execute(
        f"SELECT segment_key, arm FROM ({customer_segments_sql(_source(con))}) ORDER BY 1", [customer_id, day]
    ).fetchall()


def evaluated_dates(con: duckdb.DuckDBPyConnection, key: str) -> list[date]:
    return evaluated_dates_of(con, [key])[key]


def evaluated_dates_of(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, list[date]]:
    """The evaluated dates of each of `keys`, oldest first, in one query (not one per segment)."""
    out: dict[str, list[date]] = {k: [] for k in keys}
    if not table_exists(con, SCHEMA, "evaluations") or not keys:
        return out
    rows = con.execute(
        f"SELECT segment_key, list(as_of ORDER BY as_of) FROM {SCHEMA}.evaluations WHERE {IN_KEYS} GROUP BY 1",
        [list(keys)],
    ).fetchall()
    out.update(dict(rows))
    return out


def _changes(con: duckdb.DuckDBPyConnection, key: str, day: date, kind: str) -> list[tuple[str, str | None]]:
    if not table_exists(con, SCHEMA, "evaluations"):
        return []
    return con.execute(
        f"SELECT customer_id, arm FROM ({changes_sql(_source(con))}) WHERE kind = ? ORDER BY 1", [key, day, kind]
    ).fetchall()


def _source(con: duckdb.DuckDBPyConnection) -> str:
    """The snapshots table; none yet (a file last recorded before snapshots, opened read-only): no rows."""
    return snapshots.TABLE if table_exists(con, SCHEMA, "snapshots") else snapshots.EMPTY
