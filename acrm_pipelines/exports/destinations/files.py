"""CSV and Parquet files in the outbox, written atomically (a reader never sees a half-written file)."""

from __future__ import annotations

import filecmp
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from acrm_pipelines.exports.destinations.base import Delivery, DeliveryFailed, Job


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _rows_in(path: Path, kind: str) -> int:
    if kind == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return pacsv.read_csv(path).num_rows


def write_delivered(table: pa.Table, path: Path, kind: str) -> None:
    """A file the outside world reads: written once. Writing the same bytes again leaves it as it was (a
    re-run reproduces it); different content is refused, naming the file and both row counts."""
    write_atomically(table, path, kind, keep_delivered=True)


def write_atomically(table: pa.Table, path: Path, kind: str, keep_delivered: bool = False) -> None:
    """`path` is a real path from Job.path / Job.file (symbolic links resolved and checked against the outbox)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent.resolve() != path.parent:
        # A folder became a symbolic link after the check: never follow it with customer data.
        raise DeliveryFailed(
            f"the folder of {path.name} changed into a symbolic link while writing; nothing was written"
        )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if kind == "parquet":
            pq.write_table(table, tmp)
        else:
            pacsv.write_csv(table, tmp)
        if keep_delivered and path.exists():
            if not filecmp.cmp(tmp, path, shallow=False):
                raise DeliveryFailed(
                    f"{path} was delivered with {_rows(_rows_in(path, kind))}; this run's {_rows(table.num_rows)} "
                    "differ, so it is not replaced. Move the delivered file away to deliver the new one."
                )
            Path(tmp).unlink()
            return
        os.replace(tmp, path)  # atomic on one file system
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileSink:
    """Full mode: the whole audience. Delta mode: the changes, with an `action` column (add / remove)."""

    can_remove = True

    def deliver(self, job: Job) -> Delivery:
        kind = job.export.destination.type
        path = job.path(job.export.destination.path)
        table = job.adds
        if job.export.mode == "delta":
            adds = job.adds.append_column("action", pa.array(["add"] * job.adds.num_rows, pa.string()))
            n = job.removes.num_rows
            removes = pa.table(
                {
                    name: job.removes[name]
                    if name in job.removes.column_names
                    else pa.nulls(n, adds.schema.field(name).type)
                    for name in adds.column_names
                    if name != "action"
                }
            ).append_column("action", pa.array(["remove"] * n, pa.string()))
            table = pa.concat_tables([adds, removes.cast(adds.schema)])
        write_delivered(table, path, kind)
        return Delivery(
            location=str(path),
            sent=job.adds["customer_id"],
            removed=job.removes["customer_id"].to_pylist(),
            batches=1,
            attempts=1,
        )
