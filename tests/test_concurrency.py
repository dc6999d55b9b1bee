"""Runs never fight over the DuckDB file: the run queue and the `duckdb` pool in `dagster.yaml` make a nightly
run, a refresh and a backfill started together all succeed, one after another.

This test starts the real Dagster daemon (a subprocess; ~2-3 minutes in all) with the repo's `dagster.yaml`
in a temporary DAGSTER_HOME, submits the runs through the queued run coordinator with the `dagster` CLI,
and reads the outcome back from the instance and the DuckDB file.

It can fail (checked by hand when it was written; the committed test keeps the repo's settings):
- with `concurrency: {runs: {max_concurrent_runs: 3}}` and no `pools` limit, three runs start together and
  the nightly run's `dbt_features` step died with DuckDB's `IO Error: Could not set lock on file ".../acrm.duckdb":
  Conflicting lock is held in .../python3.11 (PID ...)`;
- with the `duckdb` pool at 1 but the run queue at its default (10), all four runs succeeded but ran at the same
  time (the overlap assertion fails), and took ~4 minutes instead of ~2.5.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster._core.run_coordinator import QueuedRunCoordinator

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
JOB = "acrm_daily"
D1, D2, D3 = "2024-03-01", "2024-03-02", "2024-03-03"
WAIT_SECONDS = 240
SEGMENTS = """\
key: buyers
rules: {field: orders_count, op: ">=", value: 1}
---
key: big_spenders
rules: {field: total_amount, op: ">", value: 100}
refresh: 4h
"""
# Hand-checked against the orders below; the same whatever order the queue runs the partitions in.
EXPECTED_EVALUATIONS = [  # segment_key, as_of, size, entered, exited
    ("big_spenders", date(2024, 3, 1), 0, 0, 0),
    ("big_spenders", date(2024, 3, 2), 1, 1, 0),  # a: 50 + 70
    ("big_spenders", date(2024, 3, 3), 2, 1, 0),  # c: 200 at 23:59:59
    ("buyers", date(2024, 3, 1), 2, 2, 0),
    ("buyers", date(2024, 3, 2), 2, 0, 0),
    ("buyers", date(2024, 3, 3), 3, 1, 0),
]


def _environment(tmp: Path, home: Path, write_csv) -> dict[str, str]:
    land = tmp / "landing"
    write_csv(
        land / "customers.csv",
        ["customer_id", "registered_at"],
        [["a", "2024-01-01"], ["b", "2024-01-01"], ["c", "2024-03-02 08:00:00"]],
    )
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [
            ["1", "a", "2024-02-20 10:00:00", "50"],
            ["2", "b", "2024-03-01 12:00:00", "80"],
            ["3", "a", "2024-03-02 09:00:00", "70"],
            ["4", "c", "2024-03-03 23:59:59", "200"],
        ],
    )
    (tmp / "segments").mkdir()
    exports = tmp / "exports"  # empty: no exports
    exports.mkdir()
    (tmp / "segments" / "s.yaml").write_text(SEGMENTS)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ACRM_LANDING_DIR": str(land),
        "ACRM_DUCKDB_PATH": str(tmp / "acrm.duckdb"),
        "ACRM_OUTBOX_DIR": str(tmp / "outbox"),
        "ACRM_EXPORTS_DIR": str(exports),
        "ACRM_JOURNEYS_DIR": str(exports / "no_journeys"),
        "ACRM_SEGMENTS_DIR": str(tmp / "segments"),
        "ACRM_START_DATE": "2024-01-01",
        "DO_NOT_TRACK": "1",
    }


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A subprocess from the repo root in its own process group, so that it can be killed with its children."""
    with log.open("w") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group, then SIGKILL to whatever is left (the daemon's code servers and run workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _errors(instance: DagsterInstance, run_id: str) -> list[str]:
    """The innermost error of every failed step or run: DuckDB's own words, not Dagster's wrapper."""
    out = []
    for record in instance.all_logs(run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}):
        event = record.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        while error is not None and error.cause is not None:
            error = error.cause
        message = error.message.strip() if error else record.user_message
        out.append(f"{event.step_key or 'run'}: ...{message[-400:]}")  # dbt's ends with DuckDB's own words
    return out


@pytest.mark.timeout(WAIT_SECONDS + 120)
def test_nightly_refresh_and_backfill_started_together_run_one_after_another(
    tmp_path: Path, monkeypatch, write_csv
) -> None:
    """A nightly run (D3), a refresh (D3) and a backfill (D1..D2, two runs), submitted at once with the
    repo's `dagster.yaml`: all four succeed, never two at a time, and the DuckDB file has every partition."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = _environment(tmp_path, home, write_csv)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    with DagsterInstance.get() as instance:
        # The file is valid for this Dagster and puts runs through the queue, one at a time, and the pool at 1.
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 1
        assert concurrency.pool_config.default_pool_limit == 1

        logs = tmp_path / "logs"
        logs.mkdir()
        workspace = ["-w", str(REPO / "workspace.yaml")]
        daemon = _start([str(BIN / "dagster-daemon"), "run", *workspace], env, logs / "daemon.log")
        submitters: list[subprocess.Popen] = []
        try:
            # The refresh is the job the `refresh: 4h` mark makes: big_spenders with the load and the dbt models
            # it reads, so it rebuilds the features for its own date whatever order the queue runs things in.
            launch = [str(BIN / "dagster"), "job", "launch", *workspace, "-j", JOB, "--tags"]
            refresh = [str(BIN / "dagster"), "job", "launch", *workspace, "-j", "acrm_refresh_4h", "--tags"]
            submitters = [
                _start([*launch, json.dumps({"dagster/partition": D3, "acrm/kind": "nightly"})], env, logs / "n.log"),
                _start([*refresh, json.dumps({"dagster/partition": D3, "acrm/kind": "refresh"})], env, logs / "r.log"),
                _start(
                    [str(BIN / "dagster"), "job", "backfill", *workspace, "-j", JOB, "--partitions", f"{D1},{D2}"]
                    + ["--noprompt", "--tags", json.dumps({"acrm/kind": "backfill"})],
                    env,
                    logs / "b.log",
                ),
            ]
            for proc, log in zip(submitters, ["n.log", "r.log", "b.log"], strict=True):
                assert proc.wait(timeout=120) == 0, f"submitting failed:\n{_tail(logs / log)}"

            deadline = time.monotonic() + WAIT_SECONDS
            while True:
                records = instance.get_run_records()
                if len(records) == 4 and all(r.dagster_run.is_finished for r in records):
                    break
                assert daemon.poll() is None, f"the daemon exited:\n{_tail(logs / 'daemon.log')}"
                if time.monotonic() > deadline:
                    states = [(r.dagster_run.tags.get("acrm/kind"), r.dagster_run.status.value) for r in records]
                    pytest.fail(f"runs not finished after {WAIT_SECONDS} s: {states}\n{_tail(logs / 'daemon.log')}")
                time.sleep(2)
        finally:
            for proc in [*submitters, daemon]:
                _kill_group(proc)

        t0 = min(r.create_timestamp.timestamp() for r in records)
        for r in sorted(records, key=lambda r: r.start_time or 0):  # shown when the test fails
            print(
                f"{r.dagster_run.tags.get('acrm/kind'):>8} {r.dagster_run.tags.get('dagster/partition')} "
                f"{r.dagster_run.status.value:>8}: queued +{r.create_timestamp.timestamp() - t0:.1f} s, "
                f"ran +{(r.start_time or t0) - t0:.1f} .. +{(r.end_time or t0) - t0:.1f} s"
            )
        runs = {r.dagster_run.run_id: r for r in records}
        kinds = sorted(
            (r.dagster_run.tags.get("acrm/kind"), r.dagster_run.tags.get("dagster/partition")) for r in records
        )
        assert kinds == [("backfill", D1), ("backfill", D2), ("nightly", D3), ("refresh", D3)]
        failed = {
            f"{r.dagster_run.tags.get('acrm/kind')} {r.dagster_run.tags.get('dagster/partition')}": _errors(instance, i)
            for i, r in runs.items()
            if r.dagster_run.status != DagsterRunStatus.SUCCESS
        }
        assert not failed, f"runs failed: {failed}"
        for run_id in runs:  # every run went through the queue, none straight to the launcher
            assert instance.all_logs(run_id, of_type=DagsterEventType.RUN_ENQUEUED), run_id

        # One after another: sorted by start, each run ends before the next one starts.
        ordered = sorted(records, key=lambda r: r.start_time)
        for before, after in zip(ordered, ordered[1:], strict=False):
            assert before.end_time <= after.start_time, (
                f"{before.dagster_run.tags.get('acrm/kind')} and {after.dagster_run.tags.get('acrm/kind')} overlapped"
            )
        # The queue held runs back: at least one was submitted while another ran, and started after it ended.
        held_back = [
            (a.dagster_run.tags.get("acrm/kind"), b.dagster_run.tags.get("acrm/kind"))
            for a in records
            for b in records
            if a is not b and b.create_timestamp.timestamp() < a.end_time <= b.start_time
        ]
        assert held_back, [(r.create_timestamp.timestamp(), r.start_time, r.end_time) for r in ordered]
        last_partition = ordered[-1].dagster_run.tags["dagster/partition"]

    with duckdb.connect(env["ACRM_DUCKDB_PATH"], read_only=True) as con:
        evaluations = con.execute(
            "SELECT segment_key, as_of, size, entered, exited FROM segments.evaluations ORDER BY ALL"
        ).fetchall()
        features_as_of = con.execute("SELECT DISTINCT as_of FROM marts.customer_features").fetchall()
    assert evaluations == EXPECTED_EVALUATIONS
    assert features_as_of == [(date.fromisoformat(last_partition),)]  # the features of the run that ran last
