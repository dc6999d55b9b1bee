"""A clean terminal: `acrm run` prints its summary, not the tools' notices and logs (those come with -v),
and the summary stays short with thousands of segments."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from acrm_pipelines.automation.runner import SUMMARY_SEGMENTS, RunSummary
from acrm_pipelines.settings import REPO_ROOT

NOISE = ("Warning", "warnings.warn", "Running with dbt", "START sql", "Finished running", "dagster - ")


def _project(tmp_path: Path, write_csv) -> dict[str, str]:
    land = tmp_path / "landing"
    write_csv(land / "customers.csv", ["customer_id"], [["a"], ["b"]])
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount"],
        [["1", "a", "2024-03-01 10:00:00", "100"]],
    )
    (tmp_path / "dh").mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dh" / "dagster.yaml")
    return {
        "ACRM_LANDING_DIR": str(land),
        "ACRM_DUCKDB_PATH": str(tmp_path / "acrm.duckdb"),
        "ACRM_OUTBOX_DIR": str(tmp_path / "outbox"),
        "ACRM_EXPORTS_DIR": str(tmp_path / "no_exports"),
        "ACRM_JOURNEYS_DIR": str(tmp_path / "no_journeys"),
        "ACRM_START_DATE": "2024-01-01",
        "DAGSTER_HOME": str(tmp_path / "dh"),
    }


def test_acrm_run_prints_the_summary_only_and_the_detail_with_v(tmp_path: Path, acrm, write_csv) -> None:
    env = _project(tmp_path, write_csv)
    quiet = acrm("run", "--as-of", "2024-03-09", env=env)
    assert quiet.returncode == 0, quiet.stderr
    both = quiet.stdout + quiet.stderr
    assert [n for n in NOISE if n in both] == []
    assert quiet.stderr == ""
    assert quiet.stdout.startswith("as of 2024-03-09: run ")
    assert "customers featured: 2" in quiet.stdout
    # The example segments are all listed (fewer than the summary's limit).
    assert "\nchampions " in quiet.stdout

    verbose = acrm("run", "--as-of", "2024-03-09", "-v", env=env)
    assert verbose.returncode == 0, verbose.stderr
    assert "Running with dbt" in verbose.stdout + verbose.stderr


def test_acrm_backfill_is_quiet_and_shows_the_run_log_with_v(tmp_path: Path, acrm, write_csv) -> None:
    env = _project(tmp_path, write_csv)
    quiet = acrm("backfill", "--from", "2024-03-08", "--to", "2024-03-08", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert [n for n in NOISE if n in quiet.stdout + quiet.stderr] == []
    assert quiet.stdout.startswith("2024-03-08: 2 customers")
    verbose = acrm("backfill", "--from", "2024-03-09", "--to", "2024-03-09", "-v", env=env)
    assert verbose.returncode == 0, verbose.stderr
    both = verbose.stdout + verbose.stderr
    # The run's own INFO log (the raw load's line) and dbt's come back with -v.
    assert "read 2, loaded 2" in both and "Running with dbt" in both


def test_the_summary_lists_the_biggest_changes_of_thousands_of_segments() -> None:
    rng = random.Random(5)
    segments = {f"s{i:04d}": (rng.randrange(10**6), rng.randrange(1000), rng.randrange(1000)) for i in range(5000)}
    summary = RunSummary(as_of="2026-11-20", run_id="r", seconds=1.0, segments=segments)
    lines = summary.lines()
    listed = [line.split()[0] for line in lines if line.startswith("s") and line.split()[0] in segments]
    # The reference: the 20 keys with most entries + exits (ties by key), in key order.
    ranked = sorted(segments, key=lambda k: (-(segments[k][1] + segments[k][2]), k))
    assert listed == sorted(ranked[:SUMMARY_SEGMENTS]) and SUMMARY_SEGMENTS == 20
    assert lines[-1].startswith("… and 4,980 more segments")
    assert len(lines) < 40
    every = [line for line in summary.lines(every_segment=True) if line.split()[0] in segments]
    assert len(every) == 5000
