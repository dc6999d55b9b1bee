"""Where each customer is in each journey, kept in the DuckDB file (schema `journeys`), and how a tick's plan
is written: in one transaction, so that a killed tick leaves the state as before it or as after it.

- `versions`: every definition customers entered with (in flight they stay on it).
- `positions`: one row per customer and entry: the step they are at (`node`, reached at `node_at`), the
  status (active, completed, exited) and why they left.
- `log`: what happened to whom and when (entered, sent, yes/no at a wait_until or branch, exited, completed).
- `sends`: the sends decided, keyed by their idempotency key (`pending` until delivered; `suppressed` with the
  reason when the export's channel rules say no); the row as exported is kept, so that a delivery repeated
  after a kill writes the same bytes.
- `ticks`: per journey, the last tick's time and the latest segment day taken.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from dateutil.relativedelta import relativedelta

from acrm_pipelines.exports.audience import TRIGGERED, ensure_log, log_triggered
from acrm_pipelines.exports.spec import Export
from acrm_pipelines.journeys.engine import Known, Plan, Position, Send, Versions
from acrm_pipelines.journeys.facts import Facts
from acrm_pipelines.journeys.spec import Journey
from acrm_pipelines.sql import table_exists

SCHEMA = "journeys"
DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.versions (journey VARCHAR NOT NULL, version VARCHAR NOT NULL,
        definition JSON NOT NULL, first_seen TIMESTAMP NOT NULL, PRIMARY KEY (journey, version))""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.positions (journey VARCHAR NOT NULL, version VARCHAR NOT NULL,
        customer_id VARCHAR NOT NULL, entry_no INTEGER NOT NULL, entered_at TIMESTAMP NOT NULL, node VARCHAR NOT NULL,
        node_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL, ended_at TIMESTAMP, reason VARCHAR,
        PRIMARY KEY (journey, customer_id, entry_no))""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.log (journey VARCHAR NOT NULL, version VARCHAR NOT NULL,
        customer_id VARCHAR NOT NULL, entry_no INTEGER NOT NULL, happened_at TIMESTAMP NOT NULL, node VARCHAR NOT NULL,
        what VARCHAR NOT NULL, detail VARCHAR, tick_at TIMESTAMP NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.sends (send_key VARCHAR PRIMARY KEY, journey VARCHAR NOT NULL,
        version VARCHAR NOT NULL, customer_id VARCHAR NOT NULL, entry_no INTEGER NOT NULL, node VARCHAR NOT NULL,
        export_key VARCHAR NOT NULL, channel VARCHAR NOT NULL, campaign VARCHAR NOT NULL, due_at TIMESTAMP NOT NULL,
        planned_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL, reason VARCHAR, row JSON, delivered_at TIMESTAMP,
        location VARCHAR)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.ticks (journey VARCHAR PRIMARY KEY, ticked_at TIMESTAMP NOT NULL,
        segment_day DATE)""",
]
POSITION_COLUMNS = [
    "journey", "version", "customer_id", "entry_no", "entered_at", "node", "node_at", "status", "ended_at", "reason"
]  # fmt: skip


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    """The tables, all or none: a tick killed half-way through creating them leaves none (the next creates all)."""
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in DDL:
            con.execute(statement)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def versions(con: duckdb.DuckDBPyConnection, journey: Journey) -> Versions:
    """The current definition and the stored ones (read-only: `apply` stores the current one)."""
    stored: dict[str, Journey] = {}
    if table_exists(con, SCHEMA, "versions"):
        rows = con.execute(f"SELECT version, definition FROM {SCHEMA}.versions WHERE journey = ?", [journey.key])
        stored = {v: Journey.model_validate(json.loads(d)) for v, d in rows.fetchall()}
    return Versions(journey, {**stored, journey.version: journey})


def known(con: duckdb.DuckDBPyConnection, key: str) -> Known:
    if not table_exists(con, SCHEMA, "ticks"):  # created last (and with the others, in one transaction)
        return Known({}, {}, None, None)
    active = {
        row[2]: Position(*row)
        for row in con.execute(
            f"SELECT {', '.join(POSITION_COLUMNS)} FROM {SCHEMA}.positions WHERE journey = ? AND status = 'active'",
            [key],
        ).fetchall()
    }
    latest = {
        c: (n, at)
        for c, n, at in con.execute(
            f"SELECT customer_id, max(entry_no), max(entered_at) FROM {SCHEMA}.positions WHERE journey = ? GROUP BY 1",
            [key],
        ).fetchall()
    }
    tick = con.execute(f"SELECT ticked_at, segment_day FROM {SCHEMA}.ticks WHERE journey = ?", [key]).fetchone()
    return Known(active, latest, *(tick or (None, None)))


def utc_now() -> datetime:
    """Now, as the loaded timestamps are: UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def apply(
    con: duckdb.DuckDBPyConnection, plan: Plan, current: Journey, exports: dict[str, Export], facts: Facts
) -> None:
    """Write the plan: positions, log, sends (with their rows and channel decisions) and the tick, at once."""
    if plan.skipped:
        return
    ensure(con)
    sends = _send_rows(plan, exports, facts)  # noqa: F841 - read by DuckDB through the variable name
    positions = pa.Table.from_pylist(  # noqa: F841 - read by DuckDB through the variable name
        [{c: getattr(p, c) for c in POSITION_COLUMNS} for p in plan.positions], schema=_POSITIONS
    )
    log = pa.Table.from_pylist([vars(s) for s in plan.log], schema=_LOG)  # noqa: F841
    ensure_log(con)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"INSERT OR IGNORE INTO {SCHEMA}.versions VALUES (?, ?, ?, ?)",
            [current.key, current.version, current.model_dump_json(by_alias=True), plan.now],
        )
        con.execute(
            f"""DELETE FROM {SCHEMA}.positions p USING positions n
            WHERE p.journey = n.journey AND p.customer_id = n.customer_id AND p.entry_no = n.entry_no"""
        )
        con.execute(f"INSERT INTO {SCHEMA}.positions SELECT * FROM positions")
        con.execute(f"INSERT INTO {SCHEMA}.log SELECT *, ? FROM log", [plan.now])
        # A send decided before (a replayed tick) keeps its first row: the key is the send's identity.
        con.execute(f"INSERT OR IGNORE INTO {SCHEMA}.sends SELECT * FROM sends")
        # In the exports' delivery log too, so that frequency caps and attribution count journey sends.
        log_triggered(con, _triggered(sends, plan.journey))
        con.execute(
            f"INSERT OR REPLACE INTO {SCHEMA}.ticks VALUES (?, ?, ?)", [plan.journey, plan.now, plan.segment_day]
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _triggered(sends: pa.Table, journey: str) -> pa.Table:
    decided = sends.filter(pc.equal(sends["status"], "pending"))
    n = decided.num_rows
    return pa.table(
        {
            "export_key": decided["export_key"],
            "as_of": pc.cast(decided["due_at"], pa.date32()),
            "run_id": pa.array([f"{TRIGGERED}journey:{journey}"] * n, pa.string()),
            "channel": decided["channel"],
            "campaign": decided["campaign"],
            "customer_id": decided["customer_id"],
            "batch_key": decided["send_key"],
        }
    )


def _capped(plan: Plan, exports: dict[str, Export], facts: Facts, why: dict[str, str | None]) -> None:
    """Mark `frequency_cap` the sends over their export's cap: the messages on the channel in the cap's window
    before the send (loaded, logged by exports and journeys, and this tick's earlier sends) are `max` already."""
    order = sorted(plan.sends, key=lambda s: (s.due_at, s.key))
    capped = [s for s in order if why.get(s.key) is None and exports[s.export_key].frequency_cap is not None]
    windows = [(s.customer_id, _window_start(exports[s.export_key], s.due_at), s.due_at) for s in capped]
    before: dict[str, list[int]] = {}
    for channel in {exports[s.export_key].channel for s in capped}:
        picked = [i for i, s in enumerate(capped) if exports[s.export_key].channel == channel]
        counts = facts.contacts(channel, [windows[i] for i in picked])
        before |= {capped[i].key: [n] for i, n in zip(picked, counts, strict=True)}
    sent: list[Send] = []  # this tick's sends so far, in time order
    for s in order:
        export = exports.get(s.export_key)
        cap = export.frequency_cap if export else None
        if why.get(s.key) is None and cap is not None:
            start = _window_start(export, s.due_at)
            earlier = sum(
                1 for o in sent
                if o.customer_id == s.customer_id and exports[o.export_key].channel == export.channel
                and start <= o.due_at < s.due_at
            )  # fmt: skip
            if before[s.key][0] + earlier >= cap.max:
                why[s.key] = "frequency_cap"
        if why.get(s.key) is None:
            sent.append(s)


def _window_start(export: Export, due: datetime) -> datetime:
    per = export.frequency_cap.per  # type: ignore[union-attr]
    if per.unit in ("M", "y"):
        return due - (relativedelta(months=per.n) if per.unit == "M" else relativedelta(years=per.n))
    return due - {"h": timedelta(hours=per.n), "d": timedelta(days=per.n), "w": timedelta(weeks=per.n)}[per.unit]


def _send_rows(plan: Plan, exports: dict[str, Export], facts: Facts) -> pa.Table:
    rows = []
    by_export: dict[str, list[str]] = {}
    for send in plan.sends:
        by_export.setdefault(send.export_key, []).append(send.customer_id)
    decided = {key: facts.export_rows(exports[key], ids) for key, ids in by_export.items() if key in exports}
    why = {s.key: decided.get(s.export_key, {}).get(s.customer_id, ("unknown_export", None))[0] for s in plan.sends}
    _capped(plan, {k: exports[k] for k in decided}, facts, why)
    for s in plan.sends:
        export = exports.get(s.export_key)
        row = decided.get(s.export_key, {}).get(s.customer_id, (None, None))[1]
        rows.append(
            {
                "send_key": s.key, "journey": s.journey, "version": s.version, "customer_id": s.customer_id,
                "entry_no": s.entry_no, "node": s.node, "export_key": s.export_key,
                "channel": export.channel if export else "", "campaign": export.campaign if export else "",
                "due_at": s.due_at, "planned_at": plan.now,
                "status": "pending" if why[s.key] is None else "suppressed", "reason": why[s.key], "row": row,
                "delivered_at": None, "location": None,
            }
        )  # fmt: skip
    return pa.Table.from_pylist(rows, schema=_SENDS)


_POSITIONS = pa.schema(
    [("journey", pa.string()), ("version", pa.string()), ("customer_id", pa.string()), ("entry_no", pa.int32()),
     ("entered_at", pa.timestamp("us")), ("node", pa.string()), ("node_at", pa.timestamp("us")),
     ("status", pa.string()), ("ended_at", pa.timestamp("us")), ("reason", pa.string())]
)  # fmt: skip
_LOG = pa.schema(
    [("journey", pa.string()), ("version", pa.string()), ("customer_id", pa.string()), ("entry_no", pa.int32()),
     ("happened_at", pa.timestamp("us")), ("node", pa.string()), ("what", pa.string()), ("detail", pa.string())]
)  # fmt: skip
_SENDS = pa.schema(
    [("send_key", pa.string()), ("journey", pa.string()), ("version", pa.string()), ("customer_id", pa.string()),
     ("entry_no", pa.int32()), ("node", pa.string()), ("export_key", pa.string()), ("channel", pa.string()),
     ("campaign", pa.string()), ("due_at", pa.timestamp("us")), ("planned_at", pa.timestamp("us")),
     ("status", pa.string()), ("reason", pa.string()), ("row", pa.string()), ("delivered_at", pa.timestamp("us")),
     ("location", pa.string())]
)  # fmt: skip
