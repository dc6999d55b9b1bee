"""Deliver the pending sends of journeys: exactly once per customer and step.

A tick's decisions are committed first (state.apply), then delivered, a group at a time: the sends one tick
decided for one export, rebuilt from the `journeys.sends` rows, so a delivery repeated after a kill or a
failure sends the same thing again. Each row carries its `send_key` for the receiver to deduplicate by.

- Files: `<outbox>/journeys/<journey>/<export>/<tick time>.csv` (or .parquet): a repeated delivery writes the
  same bytes, so every send key is in exactly one file.
- Webhooks: the export's batches (docs/exports.md), each with an `Idempotency-Key` digesting its rows' send
  keys: a repeated delivery repeats the keys, and the receiver drops what it has. A batch the receiver
  rejects (4xx) is logged `rejected` with its reason; a receiver that keeps failing fails the tick, and the
  sends stay pending for the next one.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path, PurePosixPath

import duckdb
import pyarrow as pa

from acrm_pipelines.exports.destinations.base import Job, outbox_file
from acrm_pipelines.exports.destinations.files import write_delivered
from acrm_pipelines.exports.destinations.webhook import Webhook
from acrm_pipelines.exports.spec import Export
from acrm_pipelines.journeys.state import SCHEMA, ensure, utc_now

FILE_TYPES = ("csv", "parquet")
SEND_TYPES = (*FILE_TYPES, "webhook")  # the destinations journeys send through (docs/journeys.md)


def deliver_pending(
    con: duckdb.DuckDBPyConnection, journey: str, exports: dict[str, Export], outbox: Path
) -> dict[str, int]:
    """Deliver every pending send of `journey` (this tick's and any a killed tick left); export -> sends."""
    ensure(con)
    _remove_interrupted_writes(outbox / "journeys" / journey)
    groups = con.execute(
        f"""SELECT DISTINCT export_key, planned_at FROM {SCHEMA}.sends
        WHERE journey = ? AND status = 'pending' ORDER BY 2, 1""",
        [journey],
    ).fetchall()
    counts: dict[str, int] = {}
    for export_key, planned_at in groups:
        export = exports.get(export_key)
        if export is None or export.destination.type not in SEND_TYPES:
            continue  # validation names these; a send stays pending until its export can take it
        rows = con.execute(
            f"""SELECT send_key, customer_id, node AS step, due_at, row FROM {SCHEMA}.sends
            WHERE journey = ? AND export_key = ? AND planned_at = ? AND status IN ('pending', 'delivered')
            ORDER BY send_key""",
            [journey, export_key, planned_at],
        ).fetchall()
        table = _table(rows, export)
        group = [journey, export_key, planned_at]
        rejected: dict[str, str] = {}  # customer -> the receiver's reason
        if export.destination.type == "webhook":
            location, rejected = _to_webhook(export, journey, planned_at, table, outbox, con)
        else:
            kind = export.destination.type
            path = outbox_file(outbox, _relative(journey, export_key, planned_at, kind), f"journey {journey}")
            write_delivered(table, path, kind)
            location = str(path)
        _rejected = pa.table(  # noqa: F841 - read by DuckDB through the variable name
            {
                "customer_id": pa.array(list(rejected), pa.string()),
                "why": pa.array(list(rejected.values()), pa.string()),
            }
        )
        n = con.execute(
            f"""UPDATE {SCHEMA}.sends s SET status = CASE WHEN r.why IS NULL THEN 'delivered' ELSE 'rejected' END,
                reason = r.why, delivered_at = ?, location = ?
            FROM (SELECT s2.send_key, r.why FROM {SCHEMA}.sends s2 LEFT JOIN _rejected r USING (customer_id)
                WHERE s2.journey = ? AND s2.export_key = ? AND s2.planned_at = ? AND s2.status = 'pending') r
            WHERE s.send_key = r.send_key""",
            [utc_now(), location, *group],
        ).fetchone()[0]
        counts[export_key] = counts.get(export_key, 0) + n
    return counts


def _to_webhook(
    export: Export, journey: str, planned_at: datetime, table: pa.Table, outbox: Path, con: duckdb.DuckDBPyConnection
) -> tuple[str, dict[str, str]]:
    """The group through the export's webhook; raises DeliveryFailed when the receiver keeps failing."""
    nobody = table.schema.empty_table().select(["customer_id"])
    run_id = f"journey:{journey}:{planned_at.isoformat()}"
    job = Job(export, planned_at.date(), run_id, table, nobody, outbox, con, keys_column="send_key")
    delivery = Webhook().deliver(job)
    return delivery.location, delivery.rejected


def _remove_interrupted_writes(folder: Path) -> None:
    """The temporary files of a delivery killed while writing (`.<name>.<random>.tmp`): customer rows that were
    never delivered. Deliveries of a journey run one at a time (the duckdb pool), so none is being written."""
    if folder.is_dir():
        for leftover in folder.rglob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def _relative(journey: str, export_key: str, planned_at: datetime, kind: str) -> PurePosixPath:
    # keys are [a-z0-9_] (validated), the time has no separators a path could misread
    return PurePosixPath("journeys", journey, export_key, f"{planned_at:%Y-%m-%dT%H-%M-%S}.{kind}")


def _table(rows: list[tuple], export: Export) -> pa.Table:
    names = [n for n in export.fields if n != "customer_id"]
    out: dict[str, list] = {"send_key": [], "customer_id": [], "step": [], "due_at": []} | {n: [] for n in names}
    for key, customer_id, step, due_at, row in rows:
        values = json.loads(row) if row else {}
        for name, value in (("send_key", key), ("customer_id", customer_id), ("step", step), ("due_at", due_at)):
            out[name].append(value)
        for name in names:
            out[name].append(values.get(name))
    return pa.table(out)
