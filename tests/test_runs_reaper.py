"""Which unfinished runs `reap_dead_runs` marks failed: only those whose own process is gone."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from acrm_pipelines.automation.runs import HOST_TAG, PARENT_RUN_TAG, PID_TAG, process_tags, reap_dead_runs


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_only_runs_whose_process_is_gone_are_reaped(tmp_path: Path) -> None:
    instance = DagsterInstance.local_temp(str(tmp_path))
    dead = {PID_TAG: str(_dead_pid()), HOST_TAG: socket.gethostname()}
    runs = {
        "dead": {**dead},
        "alive": process_tags(),  # this test's own process
        "other_host": {**dead, HOST_TAG: "some-other-machine"},
        "reexecution": {**dead, PARENT_RUN_TAG: "a-parent-run"},  # copied tags: not its process
        "bad_tag": {PID_TAG: "not-a-number", HOST_TAG: socket.gethostname()},
    }
    ids = {
        name: create_run_for_test(instance, job_name="j", status=DagsterRunStatus.STARTED, tags=tags).run_id
        for name, tags in runs.items()
    }
    said: list[str] = []
    reaped = reap_dead_runs(instance, said.append)
    assert reaped == [ids["dead"]]
    assert said == [
        f"the process of run {ids['dead']} (pid {dead[PID_TAG]}) is gone: marked failed, its pool slots freed"
    ]
    statuses = {name: instance.get_run_by_id(run_id).status for name, run_id in ids.items()}
    assert statuses == {
        "dead": DagsterRunStatus.FAILURE,
        "alive": DagsterRunStatus.STARTED,
        "other_host": DagsterRunStatus.STARTED,
        "reexecution": DagsterRunStatus.STARTED,
        "bad_tag": DagsterRunStatus.STARTED,
    }
