"""Run the daily job for one partition in-process: the code path the nightly schedule launches.

The run is created the way a launch from the UI creates it, with the origin of the code location that
`dagster dev` loads from workspace.yaml (its `.dagster/repository` tag `__repository__@<location>`), so the
UI lists it under the job: the job's Runs tab, the Overview timeline, the run duration charts. It then
executes in this process, as before (`execute_run` on the in-memory definitions `acrm run` built).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
from dagster import DagsterInstance, Definitions, JobDefinition
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
from dagster._core.execution.api import execute_run
from dagster._core.execution.execute_in_process import merge_run_tags
from dagster._core.remote_origin import CodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.utils import make_new_run_id
from dagster._core.workspace.load import location_origin_from_module_name, location_origins_from_yaml_paths

from acrm_pipelines.automation.jobs import DAILY_JOB
from acrm_pipelines.automation.runs import (
    child_pids,
    free_slots,
    one_cli_run,
    process_tags,
    reap_dead_runs,
    wait_for_pool,
)
from acrm_pipelines.exports.run import BACKFILL_TAGS, SEND_TAG
from acrm_pipelines.settings import REPO_ROOT, Settings

DEFINITIONS_MODULE = "acrm_pipelines.definitions"  # what workspace.yaml loads
WORKSPACE_FILE = REPO_ROOT / "workspace.yaml"


# A run's summary lists at most this many segments (the most entries + exits), unless asked for all.
SUMMARY_SEGMENTS = 20


class RunFailed(Exception):
    pass


@dataclass
class RunSummary:
    as_of: str
    run_id: str
    seconds: float
    loaded: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    customers_featured: int = 0
    checks_failed: list[str] = field(default_factory=list)
    segments_failed: dict[str, str] = field(default_factory=dict)  # not evaluated: file and reason
    segments: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # size, entered, exited
    exports: dict[str, dict] = field(default_factory=dict)  # counts and location
    journeys: dict[str, dict] = field(default_factory=dict)  # the tick's counts (docs/journeys.md)

    def lines(self, every_segment: bool = False) -> list[str]:
        """The run's summary; segments beyond SUMMARY_SEGMENTS are shortened to the biggest changes."""
        out = [f"as of {self.as_of}: run {self.run_id} finished in {self.seconds:.1f} s"]
        out.append(f"{'table':<20}{'loaded':>12}{'quarantined':>13}")
        for name, n in self.loaded.items():
            out.append(f"{name:<20}{n:>12,}{self.quarantined.get(name, 0):>13,}")
        out.append(f"customers featured: {self.customers_featured:,}")
        if self.segments:
            out.append(f"\n{'segment':<28}{'size':>10}{'entered':>10}{'exited':>10}")
            shown = sorted(self.segments)
            if not every_segment and len(shown) > SUMMARY_SEGMENTS:
                changes = sorted(shown, key=lambda k: (-(self.segments[k][1] + self.segments[k][2]), k))
                shown = sorted(changes[:SUMMARY_SEGMENTS])
            for key in shown:
                size, entered, exited = self.segments[key]
                out.append(f"{key:<28}{size:>10,}{entered:>10,}{exited:>10,}")
            if len(shown) < len(self.segments):
                out.append(
                    f"… and {len(self.segments) - len(shown):,} more segments with fewer changes "
                    "(all: -v, the segment_set asset in the UI, or segments.evaluations)"
                )
        if self.exports:
            out.append(f"\n{'export':<28}{'sent':>10}{'suppressed':>12}{'held back':>11}  location")
            for key, m in sorted(self.exports.items()):
                out.append(
                    f"{key:<28}{m.get('sent', 0):>10,}{m.get('suppressed', 0):>12,}{m.get('held_back', 0):>11,}"
                    f"  {m.get('not_sent') or m.get('location', '')}"
                )
        if self.journeys:
            out.append(f"\n{'journey':<28}{'entered':>10}{'sent':>10}{'exited':>10}{'completed':>11}")
            for key, m in sorted(self.journeys.items()):
                counts = "".join(f"{m.get(what, 0):>10,}" for what in ("entered", "sent", "exited"))
                out.append(f"{key:<28}{counts}{m.get('completed', 0):>11,}  {m.get('skipped', '')}".rstrip())
        if self.checks_failed:
            out.append(f"checks failed: {', '.join(self.checks_failed)}")
        for key, where in sorted(self.segments_failed.items()):
            out.append(f"segment {key} not evaluated (its exports skipped): {where}")
        return out


def _root_cause(error) -> str:
    """The innermost error message: the loader's or dbt's own words, not Dagster's wrapper."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _interruptible(instance: DagsterInstance, run_id: str, execute):
    """Run `execute` in a worker thread so that SIGTERM and SIGINT stop `acrm run` at once.

    Dagster defers interrupts to checkpoints while a run executes in the main thread, and its wait for a
    pool slot has none, so a signal was ignored. Here the main thread waits; on a signal it marks the run
    failed, frees its pool slots, stops its children and exits. Everything the run writes is safe to stop at
    any point (docs/operations.md, "Crash safety"), exactly as a kill would.
    """
    if threading.current_thread() is not threading.main_thread():
        return execute()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = execute()
        except BaseException as err:  # re-raised in the main thread
            outcome["error"] = err

    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in STOP_SIGNALS}
    try:
        worker = threading.Thread(target=work, name="acrm-run", daemon=True)
        worker.start()
        while worker.is_alive() and not received:
            worker.join(0.2)
        if received:
            _stop(instance, run_id, received[0])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _stop(instance: DagsterInstance, run_id: str, signum: int) -> None:
    name = signal.Signals(signum).name
    say(f"acrm: {name}: stopping run {run_id}")
    for pid in child_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        instance.report_run_failed(run, f"stopped by {name}")
    free_slots(instance, run_id)
    sys.stdout.flush()
    os._exit(128 + signum)


def check_partition(defs: Definitions, as_of: str, settings: Settings) -> None:
    try:
        day = date.fromisoformat(as_of)
    except ValueError as err:
        raise RunFailed(f"--as-of: expected a date YYYY-MM-DD, got {as_of!r}") from err
    keys = defs.resolve_job_def(DAILY_JOB).partitions_def.get_partition_keys()
    if as_of not in keys:
        last = keys[-1] if keys else "none yet"
        raise RunFailed(
            f"--as-of {day}: not a daily partition; partitions run from ACRM_START_DATE "
            f"({settings.start_date}) to today ({last})"
        )


def run_partition(
    defs: Definitions,
    settings: Settings,
    as_of: str,
    instance: DagsterInstance | None = None,
    log_level: str = "WARNING",
    tags: dict[str, str] | None = None,
) -> RunSummary:
    """Materialize the whole graph for one as-of date; raises RunFailed with the step's error. `tags` go on
    the Dagster run (a backfill's: exports/run.py decides from them whether anything is sent)."""
    check_partition(defs, as_of, settings)
    instance = instance or DagsterInstance.get()
    # The summary reads the DuckDB file too: the next waiting run starts only after it.
    with one_cli_run(instance, say):
        reap_dead_runs(instance, say)
        wait_for_pool(instance, say)
        return _run_and_summarize(defs, settings, as_of, instance, log_level, tags or {})


@functools.cache
def code_location_origin() -> CodeLocationOrigin:
    """The code location `dagster dev -w workspace.yaml` loads: the one whose module is acrm_pipelines.definitions
    (its name, the module's unless `location_name` says otherwise); the module itself without workspace.yaml."""
    if WORKSPACE_FILE.exists():
        for origin in location_origins_from_yaml_paths([str(WORKSPACE_FILE)]):
            target = getattr(origin, "loadable_target_origin", None)
            if target is not None and target.module_name == DEFINITIONS_MODULE:
                return origin
    return location_origin_from_module_name(DEFINITIONS_MODULE, attribute=None, working_directory=str(REPO_ROOT))


def remote_job_origin(job_name: str) -> RemoteJobOrigin:
    """The job in the UI's code location: runs with it are tagged `.dagster/repository=__repository__@<location>`,
    which is how the UI finds a job's runs."""
    return RemoteRepositoryOrigin(code_location_origin(), SINGLETON_REPOSITORY_NAME).get_job_origin(job_name)


def _execute(job: JobDefinition, instance: DagsterInstance, as_of: str, run_id: str, tags: dict, run_config: dict):
    """`job.execute_in_process` (same tags, in-process executor, in-memory IO, errors as events), but the run is
    created with the job's origins first, as a launch from the UI would create it."""
    in_process = job.as_ephemeral_job(resource_defs={}, input_values={})
    run = instance.create_run_for_job(
        job_def=in_process,
        run_id=run_id,
        run_config=run_config,
        tags=merge_run_tags(job, as_of, tags, asset_selection=[], instance=instance, run_config=run_config),
        remote_job_origin=remote_job_origin(job.name),
        job_code_origin=ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs", str(REPO_ROOT))
        .get_reconstructable_job(job.name)
        .get_python_origin(),
    )
    return execute_run(InMemoryJob(in_process), run, instance, raise_on_error=False)


def _run_and_summarize(
    defs: Definitions, settings: Settings, as_of: str, instance: DagsterInstance, log_level: str, tags: dict
) -> RunSummary:
    job = defs.resolve_job_def(DAILY_JOB)
    started = time.monotonic()
    run_id = make_new_run_id()
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    result = _interruptible(
        instance,
        run_id,
        lambda: _execute(job, instance, as_of, run_id, {**tags, **process_tags()}, run_config),
    )
    if not result.success:
        errors = [
            f"{e.step_key}: {_root_cause(e.event_specific_data.error)}"
            for e in result.all_events
            if e.is_step_failure and e.event_specific_data and e.event_specific_data.error
        ]
        raise RunFailed(f"run {result.run_id} for {as_of} failed: " + ("\n".join(errors) or "see the Dagster UI"))
    summary = RunSummary(as_of=as_of, run_id=result.run_id, seconds=time.monotonic() - started)
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        name = mat.asset_key.to_user_string()
        if name.startswith("raw_"):
            summary.loaded[name[4:]] = int(mat.metadata["rows_loaded"].value)
            summary.quarantined[name[4:]] = int(mat.metadata["rows_quarantined"].value)
        elif name == "segment_set":  # every evaluated segment, in one table (components/segments.py)
            for row in mat.metadata["table"].value.records:
                summary.segments[row.data["segment"]] = (row.data["size"], row.data["entered"], row.data["exited"])
        elif name.startswith("segments/"):
            m = mat.metadata
            if "entered" not in m:  # inactive: recorded so that no partition is missing, not evaluated
                continue
            summary.segments[name.split("/", 1)[1]] = (m["size"].value, m["entered"].value, m["exited"].value)
        elif name.startswith("exports/"):
            summary.exports[name.split("/", 1)[1]] = {k: v.value for k, v in mat.metadata.items()}
        elif name.startswith("journeys/"):
            summary.journeys[name.split("/", 1)[1]] = {k: v.value for k, v in mat.metadata.items()}
    for event in result.all_events:
        if event.event_type_value == "ASSET_OBSERVATION":
            observation = event.event_specific_data.asset_observation
            if "evaluation_error" in observation.metadata:
                key = observation.metadata["segment"].value
                summary.segments_failed[key] = observation.metadata["evaluation_error"].value
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                summary.checks_failed.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        summary.customers_featured = con.execute("SELECT count(*) FROM marts.customer_features").fetchone()[0]
    return summary


def backfill(
    defs: Definitions,
    settings: Settings,
    start: date,
    end: date,
    instance: DagsterInstance | None = None,
    after_each=None,
    send_exports: bool = False,
    log_level: str = "WARNING",
) -> list[RunSummary]:
    """Every daily partition from `start` to `end` (inclusive), oldest first, each point-in-time: the
    same run as `acrm run` for that date, except that exports send nothing unless `send_exports`.
    Stops at the first failure, naming the date."""
    if end < start:
        raise RunFailed(f"--to {end} is before --from {start}")
    instance = instance or DagsterInstance.get()
    tags = {BACKFILL_TAGS[1]: f"{start}..{end}", SEND_TAG: "true" if send_exports else "false"}
    with one_cli_run(instance, say):  # the whole range: no `acrm run` slips in between two days
        return _backfill(defs, settings, start, end, instance, after_each, tags, log_level)


def _backfill(
    defs, settings: Settings, start: date, end: date, instance: DagsterInstance, after_each, tags, log_level: str
):
    summaries = []
    day = start
    while day <= end:
        try:
            summary = run_partition(defs, settings, day.isoformat(), instance, log_level=log_level, tags=tags)
            if summary.segments_failed:
                failed = summary.segments_failed.items()
                raise RunFailed("; ".join(f"segment {key} not evaluated: {where}" for key, where in failed))
        except RunFailed as err:
            done = f"{summaries[0].as_of} to {summaries[-1].as_of} done; " if summaries else ""
            raise RunFailed(f"backfill stopped at {day}: {done}{err}") from err
        summaries.append(summary)
        if after_each is not None:
            after_each(summary)
        day += timedelta(days=1)
    return summaries
