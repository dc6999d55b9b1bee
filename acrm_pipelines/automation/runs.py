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
from dagster._core.launcher import DefaultRunLauncher

from acrm_pipelines.wiring.partitions import DUCKDB_POOL

PID_TAG = "acrm/pid"
HOST_TAG = "acrm/host"
PROC_START_TAG = "acrm/proc_start"  # the process's start time, so that a reused pid is not taken for it
PARENT_RUN_TAG = "dagster/parent_run_id"  # re-executions and retries copy their parent's tags, acrm/* too
UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None without such a process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def child_pids() -> list[int]:
    """The processes this one started (dbt), from the parent pid of every /proc entry."""
    me = str(os.getpid())
    return [int(p.name) for p in Path("/proc").glob("[0-9]*") if (f := _stat(int(p.name))) and f[1] == me]


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    fields = _stat(pid)
    return fields[19] if fields else None


def _started_at(ticks: str) -> float:
    """A start time in clock ticks since boot as a Unix time."""
    boot = next(
        float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
    )
    return boot + int(ticks) / os.sysconf("SC_CLK_TCK")


def process_tags() -> dict[str, str]:
    """Tags that tie a run to this process."""
    pid = os.getpid()
    return {PID_TAG: str(pid), HOST_TAG: socket.gethostname(), PROC_START_TAG: _proc_start(pid) or ""}


def _alive(pid: int, start_ticks: str | None, not_after: float | None) -> bool:
    """Whether `pid` is still the run's process: it exists, is no zombie, and is the same process (the same
    start time, or one started before the run did; a later one reused the pid)."""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    if start_ticks:
        return fields[19] == start_ticks
    return not_after is None or _started_at(fields[19]) <= not_after + 1


def _engine_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid the run's own engine events name: "Started process for run" of a launched run's worker,
    "Executing steps in process" of an in-process run."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=20).records
    for record in records:
        event = record.event_log_entry.dagster_event
        pid = getattr(event.event_specific_data, "metadata", {}).get("pid") if event is not None else None
        if pid is not None:
            with contextlib.suppress(ValueError):
                return int(pid.value)
    return None


def _run_process(instance: DagsterInstance, record, host: str) -> tuple[int, str | None] | None:
    """(pid, start ticks or None) of the process that runs `record`'s run on this host, or None when it is
    not known to run here (another host, another launcher, not launched yet)."""
    run = record.dagster_run
    tags = run.tags
    own = PID_TAG in tags and PARENT_RUN_TAG not in tags  # an `acrm run` run (not a copy of one's tags)
    if own:
        if tags.get(HOST_TAG) != host:
            return None  # another machine's run: its process can't be seen from here
        pid = _engine_pid(instance, run.run_id)
        with contextlib.suppress(ValueError):
            tagged = int(tags[PID_TAG])
            return tagged, (tags.get(PROC_START_TAG) if pid in (None, tagged) else None)
        return None
    if run.status == DagsterRunStatus.NOT_STARTED or not isinstance(instance.run_launcher, DefaultRunLauncher):
        return None  # not launched yet, or its worker may live in another container or machine
    pid = _engine_pid(instance, run.run_id)
    return (pid, None) if pid is not None else None


def free_slots(instance: DagsterInstance, run_id: str) -> None:
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def reap_dead_runs(instance: DagsterInstance, say: Callable[[str], None] = print) -> list[str]:
    """Mark the unfinished runs of this machine whose process is gone failed; free every pool slot held or
    awaited by a run that is finished or gone. Returns the ids of the runs marked failed."""
    host = socket.gethostname()
    reaped = []
    for record in instance.get_run_records(RunsFilter(statuses=[*UNFINISHED, DagsterRunStatus.NOT_STARTED])):
        run = record.dagster_run
        process = _run_process(instance, record, host)
        if process is None:
            continue
        pid, start_ticks = process
        if pid == os.getpid() or _alive(pid, start_ticks, record.start_time):
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


_held: list[Path] = []  # the lock this process holds (a second flock on it would wait for itself)


@contextlib.contextmanager
def one_cli_run(instance: DagsterInstance, say: Callable[[str], None] = print, poll: float = 1.0) -> Iterator[None]:
    """One `acrm run` or `acrm backfill` at a time per DAGSTER_HOME: a lock file the kernel releases when the
    process ends however it ends (so a killed run never leaves it held)."""
    root = instance.root_directory if not instance.is_ephemeral else None
    if root is None or _held:  # nothing to share, or held already by this process (a backfill's days)
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
        _held.append(path)
        try:
            yield
        finally:
            _held.remove(path)
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
