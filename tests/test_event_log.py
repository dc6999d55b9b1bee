"""Dagster's event log as the repo's `dagster.yaml` configures it (acrm_pipelines/wiring/event_log.py): Dagster's
SQLite files with their connections kept open. Held to Dagster's own `SqliteEventLogStorage` reading the same
files, and to a run on Dagster's default storage."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
from dagster import DagsterInstance
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from acrm_pipelines.wiring.event_log import KEEP, PooledSqliteEventLogStorage

REPO = Path(__file__).resolve().parents[1]


@dg.asset
def upstream(context) -> int:  # no annotation: this module postpones them, which Dagster cannot read
    context.log.debug("a debug line, stored like dbt's")
    return 1


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="downstream")])
def downstream(upstream: int):
    yield dg.Output(upstream + 1, metadata={"size": upstream + 1})
    yield dg.AssetCheckResult(passed=True)


def _run(home: Path) -> tuple[DagsterInstance, str]:
    instance = DagsterInstance.from_config(str(home))
    result = dg.materialize([upstream, downstream], instance=instance)
    assert result.success
    return instance, result.run_id


def _entry(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(
        error_info=None, level=20, user_message=message, run_id=run_id, timestamp=time.time(), step_key=None,
        job_name="job", dagster_event=None,
    )  # fmt: skip


def test_the_repo_instance_writes_dagsters_files_which_dagster_reads_back(tmp_path: Path) -> None:
    ours, default = tmp_path / "ours", tmp_path / "default"
    ours.mkdir(), default.mkdir()
    shutil.copy(REPO / "dagster.yaml", ours / "dagster.yaml")
    instance, run_id = _run(ours)
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    # where Dagster's default storage keeps it: the instance's folder, not this process's DAGSTER_HOME
    assert (ours / "history" / "runs" / f"{run_id}.db").exists()
    stored = [(r.event_log_entry.dagster_event_type, r.event_log_entry.user_message) for r in
              instance.get_records_for_run(run_id, limit=10_000).records]  # fmt: skip
    instance.dispose()

    # Dagster's own storage, on the same folder, reads every event and the asset indexes.
    dagsters = SqliteEventLogStorage(str(ours / "history" / "runs"))
    again = [(r.event_log_entry.dagster_event_type, r.event_log_entry.user_message) for r in
             dagsters.get_records_for_run(run_id, limit=10_000).records]  # fmt: skip
    assert again == stored
    latest = dagsters.get_latest_materialization_events([dg.AssetKey("downstream")])[dg.AssetKey("downstream")]
    assert latest is not None and latest.asset_materialization.metadata["size"].value == 2
    check = dagsters.get_latest_asset_check_execution_by_key([dg.AssetCheckKey(dg.AssetKey("downstream"), "positive")])
    assert check[dg.AssetCheckKey(dg.AssetKey("downstream"), "positive")].status.value == "SUCCEEDED"

    # The same run on Dagster's default storage records the same events, in the same order.
    reference, reference_id = _run(default)
    assert not isinstance(reference.event_log_storage, PooledSqliteEventLogStorage)
    expected = [r.event_log_entry.dagster_event_type for r in
                reference.get_records_for_run(reference_id, limit=10_000).records]  # fmt: skip
    assert [kind for kind, _ in stored] == expected
    assert ("a debug line, stored like dbt's" in {message for _, message in stored}) is True


def test_a_watcher_sees_each_event_while_the_writer_keeps_its_connection(tmp_path: Path) -> None:
    """The webserver's live view of a run: it is woken by the run's file changing. Kept open, the writer's
    connection commits into the write-ahead log, which Dagster's own watcher does not follow."""
    folder = str(tmp_path / "runs")
    writer, watcher = PooledSqliteEventLogStorage(folder), PooledSqliteEventLogStorage(folder)
    writer.store_event(_entry("r1", "first"))
    seen: list[str] = []
    watcher.watch("r1", None, lambda entry, _cursor: seen.append(entry.user_message))
    try:
        for message in ("second", "third"):
            writer.store_event(_entry("r1", message))
            deadline = time.monotonic() + 10
            while message not in seen and time.monotonic() < deadline:
                time.sleep(0.05)
            assert message in seen, f"{message} not seen: {seen}"
        assert "r1" in writer._engines  # still open: nothing was checkpointed by a close
    finally:
        watcher.end_watch("r1", next(iter(watcher._watchers["r1"])))
        watcher.dispose(), writer.dispose()


def test_events_committed_before_a_kill_are_kept(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    script = textwrap.dedent(f"""
        import os, signal, time
        from dagster._core.events.log import EventLogEntry
        from acrm_pipelines.wiring.event_log import PooledSqliteEventLogStorage
        storage = PooledSqliteEventLogStorage({str(folder)!r})
        for i in range(50):
            storage.store_event(EventLogEntry(error_info=None, level=20, user_message=f"e{{i}}", run_id="r1",
                timestamp=time.time(), step_key=None, job_name="job", dagster_event=None))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    records = SqliteEventLogStorage(str(folder)).get_records_for_run("r1", limit=100).records
    assert [r.event_log_entry.user_message for r in records] == [f"e{i}" for i in range(50)]


def test_open_databases_stay_few_however_many_runs(tmp_path: Path) -> None:
    storage = PooledSqliteEventLogStorage(str(tmp_path / "runs"))
    for i in range(3 * KEEP):
        storage.store_event(_entry(f"run{i}", "x"))
    fds = Path("/proc/self/fd")
    open_dbs = {os.readlink(fd) for fd in fds.iterdir() if os.path.exists(fd)}
    runs_open = {p for p in open_dbs if p.startswith(str(tmp_path)) and p.endswith(".db")}
    assert 0 < len(runs_open) <= KEEP
    storage.dispose()
    assert [r.event_log_entry.user_message for r in storage.get_records_for_run("run0").records] == ["x"]
