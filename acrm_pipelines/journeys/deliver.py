"""Deliver the pending sends of journeys: exactly once per customer and step.

A tick's decisions are committed first (state.apply), then delivered. A send's file is the sends its tick
decided for one export, rebuilt from the `journeys.sends` rows: a delivery repeated after a kill (between
writing and marking) writes the same bytes, and every send key is in exactly one file. Each row carries its
`send_key` for the receiver to deduplicate by.

    <outbox>/journeys/<journey>/<export>/<tick time>.csv (or .parquet, as the export's destination says)
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path, PurePosixPath

import duckdb
import pyarrow as pa

from acrm_pipelines.exports.destinations.base import outbox_file
from acrm_pipelines.exports.destinations.files import write_delivered
from acrm_pipelines.exports.spec import Export
from acrm_pipelines.journeys.state import SCHEMA, ensure, utc_now

FILE_TYPES = ("csv", "parquet")  # the destinations journeys send through (docs/journeys.md)


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
        if export is None or export.destination.type not in FILE_TYPES:
            continue  # validation names these; a send stays pending until its export can take it
        kind = export.destination.type
        rows = con.execute(
            f"""SELECT send_key, customer_id, node AS step, due_at, row FROM {SCHEMA}.sends
            WHERE journey = ? AND export_key = ? AND planned_at = ? AND status IN ('pending', 'delivered')
            ORDER BY send_key""",
            [journey, export_key, planned_at],
        ).fetchall()
        path = outbox_file(outbox, _relative(journey, export_key, planned_at, kind), f"journey {journey}")
        write_delivered(_table(rows, export), path, kind)
        n = con.execute(
            f"""UPDATE {SCHEMA}.sends SET status = 'delivered', delivered_at = ?, location = ?
            WHERE journey = ? AND export_key = ? AND planned_at = ? AND status = 'pending'""",
            [utc_now(), str(path), journey, export_key, planned_at],
        ).fetchone()[0]
        counts[export_key] = counts.get(export_key, 0) + n
    return counts


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
