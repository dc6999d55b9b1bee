"""Each dbt build's own target folder is kept for the latest builds only (features/dbt.py, prune_targets)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from acrm_pipelines.features.dbt import prune_targets

HOUR = 3600


def _folder(target: Path, name: str, age_s: float) -> Path:
    folder = target / name
    folder.mkdir()
    log = folder / "dbt.log"
    log.write_text("log")
    stamp = time.time() - age_s
    for path in (log, folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_the_newest_builds_and_any_of_the_last_hour_stay(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "manifest.json").write_text("{}")
    other = _folder(target, "something_else", 100 * HOUR)
    # 35 builds a day apart, day 1 the newest
    builds = {day: _folder(target, f"dbt_features-{day:07d}-abcdef0", day * 24 * HOUR) for day in range(1, 36)}
    removed = prune_targets(target, keep=30)
    assert sorted(removed) == sorted(builds[day] for day in range(31, 36))  # the 5 oldest
    assert all(builds[day].exists() for day in range(1, 31))
    assert not any(builds[day].exists() for day in range(31, 36))
    assert other.exists() and (target / "manifest.json").exists()


def test_a_folder_changed_in_the_last_hour_is_never_removed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    recent = [_folder(target, f"dbt_features-r{i}-0000000", 60 + i) for i in range(5)]  # minutes old
    removed = prune_targets(target, keep=2)  # beyond the newest 2, but a run may still be writing them
    assert removed == [] and all(folder.exists() for folder in recent)
    old = _folder(target, "dbt_features-old-0000000", 2 * HOUR)
    assert prune_targets(target, keep=2) == [old] and not old.exists()


def test_a_build_still_writing_its_log_stays(tmp_path: Path) -> None:
    """The folder's own time does not change when dbt appends to dbt.log inside it: the log's counts."""
    target = tmp_path / "target"
    target.mkdir()
    writing = _folder(target, "dbt_features-w-0000000", 5 * HOUR)
    os.utime(writing / "dbt.log")  # written to just now
    done = _folder(target, "dbt_features-d-0000000", 4 * HOUR)
    assert prune_targets(target, keep=0) == [done] and writing.exists()


def test_the_kept_parses_are_pruned_as_files(tmp_path: Path) -> None:
    """The last parse per DuckDB file (features/dbt.py finished) is a file under target/parses: the same rule."""
    parses = tmp_path / "parses"
    parses.mkdir()
    files = {}
    for day in range(1, 5):
        files[day] = parses / f"duckdb-{day:016x}.msgpack"
        files[day].write_bytes(b"parse")
        stamp = time.time() - day * 24 * HOUR
        os.utime(files[day], (stamp, stamp))
    other = parses / "duckdb-1.12345678.tmp"  # a copy being written: not a parse yet
    other.write_bytes(b"")
    assert prune_targets(parses, keep=2, op="*.msgpack") == [files[3], files[4]]
    assert files[1].exists() and files[2].exists() and not files[3].exists() and other.exists()
    # A copy a killed run left: removed an hour after, never while it may still be written.
    assert prune_targets(parses, keep=0, op="*.tmp") == [] and other.exists()
    stamp = time.time() - 2 * HOUR
    os.utime(other, (stamp, stamp))
    assert prune_targets(parses, keep=0, op="*.tmp") == [other] and not other.exists()


def test_the_dbt_resource_knows_the_version_of_the_dbt_it_starts() -> None:
    """DbtCli answers dagster-dbt's question (which dbt is this?) without starting `dbt --version`: the answer
    must be that of the executable it starts (the project's `acrm-dbt`), as dagster-dbt's own would be."""
    import re
    import subprocess

    from dagster_dbt import DbtCliResource

    from acrm_pipelines.features.dbt import DbtCli, dbt_executable
    from acrm_pipelines.settings import DBT_PROJECT_DIR

    executable = dbt_executable()
    assert Path(executable).name == "acrm-dbt"
    printed = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True).stdout
    core = re.search(r"installed:\s*(\d+\.\d+\.\d+)", printed)
    assert core, printed
    ours = DbtCli(project_dir=str(DBT_PROJECT_DIR), dbt_executable=executable)
    theirs = DbtCliResource(project_dir=str(DBT_PROJECT_DIR), dbt_executable=executable)
    assert str(ours._cli_version) == core.group(1) == str(theirs._cli_version)
    assert ours._initialize_dbt_core_adapter(["build"]) is None
