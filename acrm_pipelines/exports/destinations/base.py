"""The interface every destination implements, and what it reports back."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Protocol

import duckdb
import pyarrow as pa

from acrm_pipelines.exports.spec import Export, outbox_relative, path_values


class DeliveryFailed(Exception):
    """A destination gave up (after its retries); the message says where and why, without personal data."""


@dataclass
class Job:
    """One export run: what to add (and, in delta mode, remove) at the destination."""

    export: Export
    as_of: date
    run_id: str
    adds: pa.Table  # customer_id + the export's output fields
    removes: pa.Table  # customer_id (+ fields when known); empty in full mode
    outbox: Path
    con: duckdb.DuckDBPyConnection  # the run's DuckDB connection (ledgers live there)
    progress: object = None  # callable(str) for progress lines, or None
    # The column that identifies each row to the receiver (a journey's send keys), when the customer does not:
    # batch keys digest its values instead of the customer ids.
    keys_column: str | None = None

    @property
    def key(self) -> str:
        return self.export.key

    def path(self, template: str, suffix: str | None = None) -> Path:
        """The destination's file for `template` (checked again here: a definition may bypass validation)."""
        try:
            rel = outbox_relative(template, path_values(self.export, self.as_of.isoformat(), suffix))
        except ValueError as err:
            raise DeliveryFailed(f"export {self.key}: destination.path: {err}; nothing was written") from None
        return self.file(rel)

    def file(self, rel: PurePosixPath) -> Path:
        return outbox_file(self.outbox, rel, f"export {self.key}")

    def say(self, line: str) -> None:
        if callable(self.progress):
            self.progress(line)


def outbox_file(outbox: Path, rel: PurePosixPath, who: str) -> Path:
    """The real path of `rel` below the outbox, every symbolic link on the way followed; refused if that leaves
    the outbox (the outbox itself may be a link). files.write_atomically checks again after creating folders."""
    root = outbox.resolve()
    real = root.joinpath(*rel.parts).resolve()
    if not real.is_relative_to(root) or real == root:
        raise DeliveryFailed(
            f"{who}: destination.path {rel.as_posix()} leads outside ACRM_OUTBOX_DIR through a symbolic link; "
            "nothing was written"
        )
    return real


@dataclass
class Delivery:
    """What a destination did: per customer `sent` or `rejected` (with the destination's reason)."""

    location: str
    # The ids as a list, or the Arrow column of the rows sent when all were (no Python objects per row).
    sent: list[str] | pa.ChunkedArray = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # customer_id -> reason
    skipped: dict[str, str] = field(default_factory=dict)  # customer_id -> why nothing was sent (not an error)
    batch_of: dict[str, str] = field(default_factory=dict)  # customer_id -> batch key
    batches: int = 0
    attempts: int = 0


class Destination(Protocol):
    can_remove: bool

    def deliver(self, job: Job) -> Delivery: ...


def batch_key(export_key: str, as_of: date, action: str, customer_ids: list[str]) -> str:
    """Deterministic per batch content: a re-run re-sends the same keys, so the receiver can deduplicate."""
    digest = hashlib.sha256("\n".join([export_key, as_of.isoformat(), action, *customer_ids]).encode())
    return f"{export_key}:{as_of.isoformat()}:{action}:{digest.hexdigest()[:16]}"
