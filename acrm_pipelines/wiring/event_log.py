"""Dagster's SQLite event log, with each database's connections kept open (dagster.yaml `event_log_storage`).

Dagster's own `SqliteEventLogStorage` opens a new engine and connection for every event it stores and closes
them after: about 780 events per nightly run at 20k customers (dbt's models, checks and log lines, the steps).
Closing the last connection to a WAL database checkpoints it, and every commit syncs the disk: ~9 s of CPU
per run, a fifth of a demo run (docs/operations.md, *Dagster's event log*). This subclass keeps an engine
per database for the few most recent ones, sets `synchronous=NORMAL` (SQLite's recommended setting in WAL
mode: a commit survives the process being killed; only a power cut can lose the last ones) and remembers
which tables exist. The databases, their schema and their place are Dagster's own, so switching either way
reads the same history.

The webserver shows a run's new events when the run's database file changes. With connections kept open,
commits land in its write-ahead log (`<run>.db-wal`) until a checkpoint, so `watch` follows that file too.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

# Engines kept open: the index database and the runs being written or read (a long-lived webserver or daemon
# touches many runs; the others are closed, as Dagster's storage closes every one).
KEEP = 8


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose connections stay open between events. Without `base_dir`, its folder is
    the instance's, where Dagster's default storage keeps it (`<DAGSTER_HOME>/history/runs`): known once the
    instance registers itself, which Dagster does before any event is read or stored."""

    def __init__(self, base_dir: str | None = None, inst_data: Any = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._tables: set[str] = set()
        self._inst_data = inst_data
        if base_dir is not None:
            super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> dict:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: dict) -> PooledSqliteEventLogStorage:  # type: ignore[override]
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance: Any) -> None:
        if not hasattr(self, "_base_dir"):
            super().__init__(os.path.join(instance.root_directory, "history", "runs", ""), self._inst_data)
        super().register_instance(instance)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:  # as Dagster's: one thread at a time, so a connection is never shared
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            # used under _db_lock only, whichever thread holds it
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            pool_size=1,
        )
        event.listen(engine, "connect", _synchronous_normal)
        self._engines[shard] = engine
        while len(self._engines) > KEEP:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    def has_table(self, table_name: str) -> bool:
        # Asked on every asset check event; a table, once there, stays.
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)
        return table_name in self._tables

    def watch(self, run_id: str, cursor: str | None, callback: Any) -> None:
        from watchdog.observers import Observer

        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = _RunWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (watchdog, self._obs.schedule(watchdog, self._base_dir, recursive=True))

    def dispose(self) -> None:
        if not hasattr(self, "_base_dir"):  # never registered: nothing opened
            return
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
        super().dispose()


class _RunWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's watcher of one run's database, also woken by its write-ahead log."""

    def __init__(self, storage: SqliteEventLogStorage, run_id: str, callback: Any, cursor: str | None) -> None:
        super().__init__(storage, run_id, callback, cursor)
        self._patterns = [self._log_path, f"{self._log_path}-wal"]

    def on_modified(self, event: Any) -> None:
        self._process_log()


def _synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
