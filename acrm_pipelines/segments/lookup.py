"""What the membership history can answer, so `acrm members` and `acrm segments-of` never answer silently.

The history knows a segment's members on the dates it was evaluated, and on a day between two
evaluations reads the earlier one. A date it cannot speak for is a `NotKnown` (the command exits 1 with
its message): before a segment's first evaluation, after the last evaluation of a segment that is still
re-evaluated every run (an active dynamic one), or a customer the project does not know. Answers that are
known but not of the date itself (a day between evaluations; a static or inactive segment, frozen) come
with notes, printed on stderr.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import duckdb

from acrm_pipelines.segments.spec import Segment
from acrm_pipelines.sql import table_exists

SHOWN = 5  # segment keys named in a note before "… and N more"


class NotKnown(LookupError):
    """The history does not hold the answer; the message says why and what would record it."""


def _re_evaluated(seg: Segment) -> bool:
    """Evaluated by every run (so a later date is simply not run yet), unlike static and inactive segments."""
    return seg.active and seg.type == "dynamic"


def members_day(key: str, seg: Segment, dates: list[date], day: date) -> tuple[date, list[str]]:
    """The evaluated date whose membership is `key`'s on `day`, and notes; NotKnown when there is none."""
    if not dates:
        if not seg.active:
            raise NotKnown(f"segment {key!r} has never been evaluated (it is inactive: active: false)")
        raise NotKnown(f"segment {key!r} has never been evaluated (run `acrm run --as-of {day}`)")
    first, last = dates[0], dates[-1]
    if day < first:
        # A backfill records the date for a segment every run evaluates; static and inactive ones it leaves frozen.
        hint = f" (run `acrm backfill --from {day} --to {day}` to record them)" if _re_evaluated(seg) else ""
        raise NotKnown(
            f"segment {key!r} was first evaluated on {first}; {day} is earlier, so its members then are not known"
            + hint
        )
    if day > last:
        if not seg.active:
            return last, [f"note: {key} is inactive (active: false): not re-evaluated since {last}, its members then"]
        if seg.type == "static":
            return last, [f"note: {key} is static: frozen since {first}, its members of {last}"]
        raise NotKnown(f"segment {key!r} was last evaluated on {last}; {day} is later (run `acrm run --as-of {day}`)")
    read = max(d for d in dates if d <= day)
    if read == day:
        return day, []
    return read, [f"note: {key} was not evaluated on {day}; these are its members of {read}, the evaluation before it"]


def customer_known(con: duckdb.DuckDBPyConnection, customer_id: str) -> bool:
    """In an evaluation (segments.customer_index) or in the current features."""
    for schema, name in (("segments", "customer_index"), ("marts", "customer_features")):
        if table_exists(con, schema, name):
            hit = con.execute(f"SELECT 1 FROM {schema}.{name} WHERE customer_id = ? LIMIT 1", [customer_id]).fetchone()
            if hit:
                return True
    return False


def _named(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def segments_of_notes(
    con: duckdb.DuckDBPyConnection, customer_id: str, day: date, definitions: Mapping[str, Segment]
) -> list[str]:
    """Notes on the answer of `segments-of customer_id` on `day`; NotKnown when the history cannot give it.

    `definitions`: the segments defined now (empty when they do not load: every evaluated segment then counts
    as re-evaluated every run).
    """
    if not customer_known(con, customer_id):
        raise NotKnown(
            f"customer {customer_id!r} is not known: not in marts.customer_features nor in any evaluation "
            "(segments.customer_index)"
        )
    if not table_exists(con, "segments", "evaluations"):
        raise NotKnown("no segment has been evaluated yet (run `acrm run --as-of DATE`)")
    rows = con.execute(
        "SELECT segment_key, min(as_of), max(as_of), max(as_of) FILTER (WHERE as_of <= ?) "
        "FROM segments.evaluations GROUP BY 1 ORDER BY 1",
        [day],
    ).fetchall()
    if not rows:
        raise NotKnown("no segment has been evaluated yet (run `acrm run --as-of DATE`)")
    first = min(r[1] for r in rows)
    if day < first:
        raise NotKnown(
            f"no segment was evaluated on or before {day}: the history starts on {first} "
            f"(run `acrm backfill --from {day} --to {day}` to record it)"
        )
    evaluated = {key: (last, read) for key, _, last, read in rows}
    # Segments every run re-evaluates: a date after all their evaluations is a run not made yet. A segment
    # no longer defined is not re-evaluated; without definitions every evaluated segment counts.
    live = [k for k, seg in definitions.items() if _re_evaluated(seg)] if definitions else list(evaluated)
    latest = max((evaluated[k][0] for k in live if k in evaluated), default=None)
    if latest is not None and day > latest:
        raise NotKnown(f"segments were last evaluated on {latest}; {day} is later (run `acrm run --as-of {day}`)")
    notes = []
    reads = {k: evaluated[k][1] for k in evaluated}
    if day not in reads.values():
        before = max(r for r in reads.values() if r is not None)
        notes.append(
            f"note: no segment was evaluated on {day}; these are the memberships of {before}, the evaluation before it"
        )
        return notes
    never = sorted(k for k in live if reads.get(k) is None)
    earlier = sorted(k for k in live if reads.get(k) is not None and reads[k] < day)
    if never:
        notes.append(f"note: not known for {len(never)} segment(s) not evaluated by {day}: {_named(never)}")
    if earlier:
        notes.append(
            f"note: {len(earlier)} segment(s) were not evaluated on {day}, read at their evaluation before: "
            f"{_named(earlier)}"
        )
    return notes
