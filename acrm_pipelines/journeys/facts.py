"""What a journey tick reads from the rest of the pipeline: segment entries and members (through the segment
history's public reader), events and purchases (the loaded rows, not the day-cut marts, so that a tick
during the day sees the events loaded so far), time zones and the exports' fields (the features).

Timestamps are UTC without a zone, as loaded. A segment's day `d` is known from its cut-off, the start of
the next day (`cutoff(d)`); its first evaluated day is where its history starts, not a change, so nobody
enters or exits a journey on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

import duckdb
import pyarrow as pa

from acrm_pipelines.exports.audience import LOG, channel_checks, contacts_sql, field_sql
from acrm_pipelines.exports.spec import Export
from acrm_pipelines.features.history import feature_columns
from acrm_pipelines.journeys.spec import PURCHASE, Entry
from acrm_pipelines.segments import members
from acrm_pipelines.segments.dates import cutoff  # the moment a segment's day is known: the end of that day
from acrm_pipelines.sql import table_exists

EVENTS = "staging.stg_crm__events"
ORDERS = "staging.stg_crm__orders"
FEATURES = "marts.customer_features"


def known_day(at: datetime) -> date:
    """The latest day whose memberships are known at `at` (its cut-off at or before `at`)."""
    return (at - timedelta(days=1)).date()


class Facts:
    """The reads of one tick, each cached: a tick asks the same segment and day many times."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self._members: dict[tuple[str, date], frozenset[str]] = {}
        self._days: dict[str, list[date]] = {}

    # --- segments ---------------------------------------------------------------------------------------

    def evaluated_days(self, key: str) -> list[date]:
        if key not in self._days:
            self._days[key] = members.evaluated_dates(self.con, key)
        return self._days[key]

    def members(self, key: str, day: date) -> frozenset[str]:
        """Members of `key` on `day` (the latest evaluation on or before it)."""
        if (key, day) not in self._members:
            self._members[(key, day)] = frozenset(c for c, _ in members.members_at(self.con, key, day))
        return self._members[(key, day)]

    def change_days(self, key: str, after: date | None, now: datetime) -> list[date]:
        """The evaluated days of `key` after `after`, known at `now`, that are changes (not its first day)."""
        days = self.evaluated_days(key)
        return [d for d in days[1:] if (after is None or d > after) and cutoff(d) <= now]

    def segment_entries(self, entry: Entry, day: date) -> list[str]:
        """The customers a segment entry takes on `day` (a change day of its segments)."""
        if entry.entered:
            return [c for c, _ in members.entered_at(self.con, entry.entered, day)]
        if entry.exited:
            return members.exited_at(self.con, entry.exited, day)
        assert entry.moved is not None
        left = set(members.exited_at(self.con, entry.moved.from_, day))
        return [c for c, _ in members.entered_at(self.con, entry.moved.to, day) if c in left]

    # --- events -----------------------------------------------------------------------------------------

    def events(
        self, kinds: Iterable[str], after: datetime, until: datetime, customers: Sequence[str] | None = None
    ) -> list[tuple[str, datetime, str]]:
        """(customer_id, occurred_at, kind) of the events of `kinds` in (after, until], oldest first;
        `purchase` is a completed order. Only `customers`' when given."""
        kinds = sorted(set(kinds))
        if not kinds or (customers is not None and not customers):
            return []
        parts, params = [], []
        who = "AND customer_id IN (SELECT customer_id FROM _who)" if customers is not None else ""
        _who = pa.table({"customer_id": pa.array(list(customers or []), pa.string())})  # noqa: F841 - read by DuckDB
        if PURCHASE in kinds and table_exists(self.con, *ORDERS.split(".")):
            parts.append(
                f"""SELECT customer_id, ordered_at AS moment, '{PURCHASE}' AS kind FROM {ORDERS}
                WHERE coalesce(status, 'completed') = 'completed' AND ordered_at > ? AND ordered_at <= ? {who}"""
            )
            params += [after, until]
        others = [k for k in kinds if k != PURCHASE]
        if others and table_exists(self.con, *EVENTS.split(".")):
            parts.append(
                f"""SELECT customer_id, occurred_at AS moment, event_type AS kind FROM {EVENTS}
                WHERE event_type IN (SELECT unnest(?::VARCHAR[])) AND occurred_at > ? AND occurred_at <= ? {who}"""
            )
            params += [others, after, until]
        if not parts:
            return []
        sql = " UNION ALL ".join(parts) + " ORDER BY moment, customer_id, kind"
        return [(c, at, k) for c, at, k in self.con.execute(sql, params).fetchall()]

    # --- features ---------------------------------------------------------------------------------------

    def timezones(self, customers: Sequence[str]) -> dict[str, str | None]:
        if not customers or "timezone" not in set(feature_columns(self.con)):
            return {}
        _who = pa.table({"customer_id": pa.array(list(customers), pa.string())})  # noqa: F841 - read by DuckDB
        rows = self.con.execute(
            f"SELECT customer_id, timezone FROM {FEATURES} WHERE customer_id IN (SELECT customer_id FROM _who)"
        ).fetchall()
        return dict(rows)

    def contacts(self, channel: str, windows: Sequence[tuple[str, datetime, datetime]]) -> list[int]:
        """The messages on `channel` each (customer, since, until) got before this tick: loaded messages and the
        sends the delivery log holds (exports' and journeys'), as an export's frequency cap counts them."""
        if not windows or not table_exists(self.con, "marts", "fct_messages"):
            return [0] * len(windows)
        _who = pa.table(  # noqa: F841 - read by DuckDB through the variable name
            {
                "i": pa.array(range(len(windows)), pa.int64()),
                "customer_id": pa.array([w[0] for w in windows], pa.string()),
                "since": pa.array([w[1] for w in windows], pa.timestamp("us")),
                "until": pa.array([w[2] for w in windows], pa.timestamp("us")),
            }
        )
        with_log = table_exists(self.con, LOG, "deliveries")
        rows = self.con.execute(contacts_sql(with_log), [channel, channel] if with_log else [channel]).fetchall()
        counts = dict(rows)
        return [int(counts.get(i, 0)) for i in range(len(windows))]

    def export_rows(self, export: Export, customers: Sequence[str]) -> dict[str, tuple[str | None, str]]:
        """customer_id -> (why not sent or None, the export's fields as JSON) from today's features, with the
        export's channel rules: no features, no consent, unsubscribed, complained."""
        if not customers:
            return {}
        checks = channel_checks(export, set(feature_columns(self.con)))
        fields = "".join(f", {field_sql(n, s)}" for n, s in export.fields.items() if n != "customer_id")
        _who = pa.table({"customer_id": pa.array(list(customers), pa.string())})  # noqa: F841 - read by DuckDB
        rows = self.con.execute(
            f"""WITH r AS (SELECT w.customer_id{fields} FROM _who w LEFT JOIN {FEATURES} f USING (customer_id))
            SELECT r.customer_id, CASE {" ".join(checks)} END, to_json(r)::VARCHAR
            FROM r LEFT JOIN {FEATURES} f USING (customer_id)"""
        ).fetchall()
        return {c: (why, row) for c, why, row in rows}
