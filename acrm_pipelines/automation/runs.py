"""Runs that died without a word, and one `acrm run` at a time per DAGSTER_HOME.

A run killed by SIGKILL (or the kernel's OOM killer, or a lost terminal) never reports its end: it stays
STARTED in Dagster's run storage and keeps its `duckdb` pool slot, so every later run would wait for the slot
forever and the run queue (one run at a time) would never start another. `reap_dead_runs` finds such runs by
the process that ran them (the `acrm/pid` tag of `acrm run`, or the pid of a launched run's worker that
Dagster records in its "Started process" event), marks them failed and frees their slots. `acrm run` calls
it before it starts; the `acrm_dead_runs` sensor calls it for runs launched from the UI.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from acrm_pipelines.automation.partitions import DUCKDB_POOL

PID_TAG = "acrm/pid"
HOST_TAG = "acrm/host"
PROC_START_TAG = "acrm/proc_start"  # the process's start time, so that a reused pid is not taken for it
UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _proc_start(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    """Tags that tie a run to this process."""
    pid = os.getpid()
    return {PID_TAG: str(pid), HOST_TAG: socket.gethostname(), PROC_START_TAG: _proc_start(pid) or ""}


def _alive(pid: int, start: str | None) -> bool:
    now = _proc_start(pid)
    if now is None:
        return False
    return not start or now == start


def _worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid of a launched run's worker, from its "Started process for run" engine event."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=20).records
    for record in records:
        event = record.event_log_entry.dagster_event
        pid = getattr(event.event_specific_data, "metadata", {}).get("pid") if event is not None else None
        if pid is not None:
            with contextlib.suppress(ValueError):
                return int(pid.value)
    return None


def free_slots(instance: DagsterInstance, run_id: str) -> None:
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def reap_dead_runs(instance: DagsterInstance, say: Callable[[str], None] = print) -> list[str]:
    """Mark the unfinished runs of this machine whose process is gone failed; free every pool slot held or
    awaited by a run that is finished or gone. Returns the ids of the runs marked failed."""
    host = socket.gethostname()
    reaped = []
    for run in instance.get_runs(RunsFilter(statuses=[*UNFINISHED, DagsterRunStatus.NOT_STARTED])):
        if run.tags.get(HOST_TAG, host) != host:
            continue  # another machine's run: its process can't be seen from here
        if run.status == DagsterRunStatus.NOT_STARTED and PID_TAG not in run.tags:
            continue  # created but not launched yet (only `acrm run` executes a run it has just created)
        if PID_TAG in run.tags:
            pid, start = int(run.tags[PID_TAG]), run.tags.get(PROC_START_TAG)
        else:
            pid, start = _worker_pid(instance, run.run_id), None
        if pid is None or _alive(pid, start) or pid == os.getpid():
            continue
        message = f"the process of run {run.run_id} (pid {pid}) is gone: marked failed, its pool slots freed"
        instance.report_run_failed(run, message)
        free_slots(instance, run.run_id)
        say(message)
        reaped.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for key in storage.get_concurrency_keys():
            info = storage.get_concurrency_info(key)
            holders = {s.run_id for s in info.claimed_slots} | {s.run_id for s in info.pending_steps}
            for run_id in holders:
                run = instance.get_run_by_id(run_id)
                if run is None or run.is_finished:
                    free_slots(instance, run_id)
    return reaped


def pool_holders(instance: DagsterInstance, pool: str = DUCKDB_POOL) -> set[str]:
    """Runs holding a slot of `pool` now."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or pool not in storage.get_concurrency_keys():
        return set()
    return {s.run_id for s in storage.get_concurrency_info(pool).claimed_slots}


def wait_for_pool(instance: DagsterInstance, say: Callable[[str], None] = print, poll: float = 1.0) -> None:
    """Wait, saying so once, while another live run holds the `duckdb` pool (Dagster's own wait for a slot
    spins without output and ignores signals, so `acrm run` waits here first, where Ctrl-C works)."""
    told: set[str] = set()
    while holders := pool_holders(instance):
        if holders - told:
            say(f"waiting for run {', '.join(sorted(holders))} to free the {DUCKDB_POOL} pool (Ctrl-C to stop)")
            told |= holders
        time.sleep(poll)
        reap_dead_runs(instance, say)


@contextlib.contextmanager
def one_cli_run(instance: DagsterInstance, say: Callable[[str], None] = print, poll: float = 1.0) -> Iterator[None]:
    """One `acrm run` or `acrm backfill` at a time per DAGSTER_HOME: a lock file the kernel releases when the
    process ends however it ends (so a killed run never leaves it held)."""
    root = instance.root_directory if not instance.is_ephemeral else None
    if root is None:
        yield
        return
    path = Path(root) / ".acrm-run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as lock:
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    lock.seek(0)
                    holder = lock.read().strip() or "another process"
                    say(f"waiting for another acrm run on {root} to finish ({holder}; Ctrl-C to stop)")
                    told = True
                time.sleep(poll)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


DEAD_RUNS_SENSOR = "acrm_dead_runs"


@sensor(
    name=DEAD_RUNS_SENSOR,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Every minute: runs whose process died (killed, out of memory) are marked failed and their "
    "duckdb pool slots freed, so the queue and the pool never wait for them.",
)
def acrm_dead_runs(context: SensorEvaluationContext) -> SkipReason:
    reaped = reap_dead_runs(context.instance, context.log.warning)
    return SkipReason(f"{len(reaped)} dead run(s) marked failed" if reaped else "no dead runs")
