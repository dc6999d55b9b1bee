"""A run killed at any stage never blocks the next one, leaves no orphan, and a repeated run ends where a clean
run does: the same features, memberships, history and exports.

`acrm run` runs as a subprocess with a real DAGSTER_HOME (the repo's dagster.yaml: the run queue and the
`duckdb` pool of one slot) and SIGKILLs itself at one stage boundary (tests/crash_run.py): after a raw load,
in the middle of `dbt build`, between appending a day's segment changes and saving their state, after the
first committed ledger batch of an export. Each next run must reap the dead one and finish. Before these fixes
the run after a kill during the load waited forever on the dead run's pool slot, and a kill in the history
step doubled `segments.changes` on the re-run.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from tests.cases.demo import DEMO_END

REPO = Path(__file__).resolve().parent.parent
AS_OF = DEMO_END.isoformat()
RUN_TIMEOUT = 300


def _env(tmp: Path, landing: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ACRM_LANDING_DIR": str(landing),
        "ACRM_DUCKDB_PATH": str(tmp / "acrm.duckdb"),
        "ACRM_OUTBOX_DIR": str(tmp / "outbox"),
        "ACRM_SEGMENTS_DIR": str(REPO / "segments"),
        "ACRM_EXPORTS_DIR": str(REPO / "exports"),
        "ACRM_START_DATE": "2019-01-01",
    }


def _run(stage: str, env: dict[str, str], pid_file: Path | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "tests.crash_run", stage, AS_OF, str(pid_file or "")]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _snapshot(tmp: Path) -> dict:
    """What a run leaves, in a form that does not depend on run ids, times or random promo codes."""
    with duckdb.connect(str(tmp / "acrm.duckdb"), read_only=True) as con:
        q = lambda sql: sorted(con.execute(sql).fetchall(), key=repr)  # noqa: E731
        snap = {
            "features": q("SELECT * FROM marts.customer_features"),
            "quarantine": q("SELECT table_name, source_file, row_number, reason FROM raw.quarantine"),
            "changes": q("SELECT segment_key, customer_id, as_of, kind, arm FROM segments.changes"),
            "evaluations": q("SELECT segment_key, as_of, size, entered, exited, arms FROM segments.evaluations"),
            "ledger": q("SELECT campaign, kind, customer_id, points, code IS NOT NULL FROM exports.ledger"),
            "codes": con.execute("SELECT count(DISTINCT code) FROM exports.ledger WHERE code IS NOT NULL").fetchone(),
            "latest_runs": q(
                "SELECT export_key, status FROM exports.runs "
                "QUALIFY row_number() OVER (PARTITION BY export_key ORDER BY started_at DESC) = 1"
            ),
        }
    files = {}
    for path in sorted((tmp / "outbox").rglob("*.csv")):
        with path.open() as f:
            rows = [{k: v for k, v in r.items() if k != "code"} for r in csv.DictReader(f)]
        files[path.relative_to(tmp / "outbox").as_posix()] = sorted(rows, key=repr)
    snap["files"] = files
    return snap


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    from acrm_pipelines.demo.generator import generate

    land = tmp_path_factory.mktemp("crash") / "landing"
    generate(land, customers=1500, seed=5, fmt="csv", end_date=DEMO_END)
    return land


@pytest.fixture(scope="module")
def clean(tmp_path_factory, landing: Path) -> dict:
    tmp = tmp_path_factory.mktemp("clean")
    done = _run("none", _env(tmp, landing))
    assert done.returncode == 0, done.stderr
    return _snapshot(tmp)


def test_killed_at_every_stage_then_rerun_equals_a_clean_run(tmp_path: Path, landing: Path, clean: dict) -> None:
    env = _env(tmp_path, landing)
    pid_file = tmp_path / "dbt.pid"
    for stage in ("load", "dbt", "history", "export"):
        killed = _run(stage, env, pid_file)
        assert killed.returncode == -signal.SIGKILL, f"{stage}: {killed.returncode} {killed.stderr[-2000:]}"
        if stage == "dbt":  # the dbt child died with its parent instead of writing on as an orphan
            kids = [int(p) for p in pid_file.read_text().split()]
            deadline = time.monotonic() + 10
            while any(_alive(p) for p in kids) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(_alive(p) for p in kids), f"dbt {kids} outlived its killed run"
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    dead = [r for r in instance.get_runs() if r.status == DagsterRunStatus.STARTED]
    assert len(dead) == 1  # only the last killed run: each run reaped the one before it

    again = _run("none", env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is gone: marked failed" in again.stderr
    runs = DagsterInstance.from_config(env["DAGSTER_HOME"]).get_runs()
    assert [r.status for r in runs].count(DagsterRunStatus.FAILURE) == 4
    assert [r.status for r in runs].count(DagsterRunStatus.SUCCESS) == 1

    after = _snapshot(tmp_path)
    for part in clean:
        assert after[part] == clean[part], part


def _start(env: dict[str, str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "tests.crash_run", "none", AS_OF]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_stops_a_waiting_run_and_frees_nothing_it_does_not_hold(tmp_path: Path, landing: Path) -> None:
    """A second `acrm run` on the same DAGSTER_HOME waits for the first, says so, and stops on SIGTERM."""
    env = _env(tmp_path, landing)
    first = _start(env)
    lock = Path(env["DAGSTER_HOME"]) / ".acrm-run.lock"
    deadline = time.monotonic() + 60
    while f"pid {first.pid}" not in (lock.read_text() if lock.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    second = _start(env)
    try:
        waited = ""
        deadline = time.monotonic() + 60
        while "waiting for another acrm run" not in waited and time.monotonic() < deadline:
            line = second.stderr.readline()
            if not line and second.poll() is not None:
                break
            waited += line
        assert "waiting for another acrm run" in waited
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) != 0
    finally:
        second.kill()
    _, err = first.communicate(timeout=RUN_TIMEOUT)
    assert first.returncode == 0, err[-3000:]
