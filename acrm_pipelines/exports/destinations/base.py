"""The interface every destination implements, and what it reports back."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa

from acrm_pipelines.exports.spec import Export


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

    @property
    def key(self) -> str:
        return self.export.key

    def path(self, template: str, suffix: str | None = None) -> Path:
        rel = template.format(
            key=self.key,
            as_of=self.as_of.isoformat(),
            campaign=self.export.campaign,
            type=self.export.destination.type if suffix is None else suffix,
        )
        return self.outbox / rel

    def say(self, line: str) -> None:
        if callable(self.progress):
            self.progress(line)


@dataclass
class Delivery:
    """What a destination did: per customer `sent` or `rejected` (with the destination's reason)."""

    location: str
    sent: list[str] = field(default_factory=list)
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
