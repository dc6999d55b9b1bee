"""Benchmark: `acrm run` itself (the path users run, through Dagster), a first day and a nightly day.

    .venv/bin/python bench/acrm_run.py --customers 20000 --segments 1000 [--baseline-repo DIR]

Writes demo data and `--segments` generated segments (bench/segments.py's generator) to a temporary
folder, then runs `acrm run` for two consecutive days on a fresh DAGSTER_HOME (the repo's dagster.yaml,
SQLite storage). Per day it prints the wall time, each step's time from Dagster's own step stats, and
`other_s`: the wall time no step accounts for (loading definitions, run start and end, and the
bookkeeping between steps). With `--baseline-repo` (another checkout of this project, e.g. a git
worktree of an earlier commit with `dbt parse` run in its dbt_project; its own `.venv` if it has one, else
this one, with the checkout first on PYTHONPATH), the same data runs through it too, in the same process.
Peak memory is the largest resident size among the runs (the children's ru_maxrss).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.segments import generate_segments  # noqa: E402

AS_OF = date(2026, 11, 19)


def python(repo: Path) -> str:
    """The checkout's own venv, or this one (the checkout's code still comes first on PYTHONPATH)."""
    own = repo / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


def run_days(repo: Path, work: Path, landing: Path, segments: Path) -> list[dict]:
    """Two `acrm run`s of `repo` on a fresh DuckDB file and DAGSTER_HOME; per day: wall and step seconds."""
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(repo / "dagster.yaml", home / "dagster.yaml")
    (work / "exports").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ACRM_LANDING_DIR": str(landing),
        "ACRM_DUCKDB_PATH": str(work / "acrm.duckdb"),
        "ACRM_SEGMENTS_DIR": str(segments),
        "ACRM_EXPORTS_DIR": str(work / "exports"),
        "ACRM_OUTBOX_DIR": str(work / "outbox"),
        "ACRM_START_DATE": "2024-01-01",
    }
    out = []
    for day in (AS_OF, AS_OF + timedelta(days=1)):
        started = time.perf_counter()
        done = subprocess.run(
            [python(repo), "-m", "acrm_pipelines.cli", "run", "--as-of", day.isoformat()],
            env={**env, "PYTHONPATH": str(repo)},
            cwd=repo,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{repo}: acrm run {day} failed:\n{done.stderr[-3000:]}")
        out.append({"day": day, "wall_s": wall, "steps": step_seconds(repo, home)})
    return out


def step_seconds(repo: Path, home: Path) -> dict[str, float]:
    """Step durations of the latest run, read with `repo`'s own Python and Dagster."""
    code = (
        "import json; from dagster import DagsterInstance; i = DagsterInstance.get(); r = i.get_runs(limit=1)[0];"
        "print(json.dumps({s.step_key: s.end_time - s.start_time for s in i.get_run_step_stats(r.run_id)}))"
    )
    done = subprocess.run(
        [python(repo), "-c", code],
        env={**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        check=True,
    )
    return yaml.safe_load(done.stdout.strip().splitlines()[-1])


def report(label: str, days: list[dict]) -> None:
    for d in days:
        steps = d["steps"]
        top = sorted(steps.items(), key=lambda kv: -kv[1])[:4]
        other = d["wall_s"] - sum(steps.values())
        print(
            f"{label:<10}{d['day']!s:<12}{d['wall_s']:>8.1f}{steps.get('segments', 0.0):>12.1f}{other:>10.1f}  "
            + ", ".join(f"{k} {v:.1f}" for k, v in top),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--segments", type=int, default=1000)
    parser.add_argument("--baseline-repo", type=Path, help="another checkout to run on the same data")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="acrm-bench-run-"))
    try:
        from acrm_pipelines.demo.generator import generate

        landing = work / "landing"
        generate(landing, customers=args.customers, seed=42, fmt="csv", end_date=AS_OF + timedelta(days=1))
        segments = work / "segments"
        segments.mkdir()
        (segments / "generated.yaml").write_text(yaml.safe_dump_all(generate_segments(args.segments), sort_keys=False))
        print(f"customers={args.customers} segments={args.segments}")
        print(f"{'checkout':<10}{'day':<12}{'wall_s':>8}{'segments_s':>12}{'other_s':>10}  largest steps (s)")
        runs = [("this", ROOT)] + ([("baseline", args.baseline_repo.resolve())] if args.baseline_repo else [])
        for label, repo in runs:
            for leftover in ("acrm.duckdb", "acrm.duckdb.wal", "acrm.duckdb.segment-state", "outbox"):
                path = work / leftover
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            report(label, run_days(repo, work, landing, segments))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak_mb={peak:.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
