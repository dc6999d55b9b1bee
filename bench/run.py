"""Benchmark: the full pipeline for one partition — demo data, load, features, segments, exports to files.

    .venv/bin/python bench/run.py --customers 1000000 [--segments 1000] [--exports 20]

Stages run the project's own code directly (the loader, `dbt build` as a subprocess, the segment
engine, the export runner) so each can be timed; the feature stage is compared with a plain-pandas
computation of the same features (tests/reference/features.py) in the same run. Prints a table of wall
time and peak memory per stage, then one line for the nightly partition (features, segments and
exports of the day after the first one; total_s is their sum, the load excluded):
`customers=N orders=M features_s=… pandas_features_s=… segments_s=… exports_s=… total_s=… peak_mb=…`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acrm_pipelines.demo.generator import generate  # noqa: E402
from acrm_pipelines.exports.run import run_export  # noqa: E402
from acrm_pipelines.exports.validate import load_exports  # noqa: E402
from acrm_pipelines.features.dbt import dbt_executable, dbt_vars  # noqa: E402
from acrm_pipelines.ingest.loader import load_all  # noqa: E402
from acrm_pipelines.segments.catalogue import load_catalogue  # noqa: E402
from acrm_pipelines.segments.evaluate import evaluate  # noqa: E402
from acrm_pipelines.segments.history import record  # noqa: E402
from acrm_pipelines.segments.validate import load_segments  # noqa: E402
from acrm_pipelines.settings import DBT_PROJECT_DIR, Settings  # noqa: E402
from bench.segments import generate_segments  # noqa: E402

AS_OF = date(2026, 11, 20)  # the nightly partition the final line reports
FIRST = AS_OF - timedelta(days=1)  # the partition before it, which starts the history


def peak_mb() -> float:
    """Peak resident memory of this process and of finished children (dbt), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def exports_for(segment_keys: list[str], n: int) -> list[dict]:
    return [
        {
            "key": f"x{i:03d}",
            "segment": key,
            "channel": "email",
            "campaign": f"bench-{i}",
            "destination": {"type": "csv"},
            "fields": {
                "customer_id": "customer_id",
                "email": "email",
                "name": "first_name",
                "bonus": {"feature": "bonus_balance", "format": "round0"},
            },
        }
        for i, key in enumerate(segment_keys[:n])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=1_000)
    parser.add_argument("--exports", type=int, default=20)
    parser.add_argument("--skip-pandas", action="store_true", help="leave out the pandas baseline")
    args = parser.parse_args()
    rows: list[tuple[str, float, float, str]] = []
    timings: dict[str, float] = {}

    def stage(name: str, fn):
        t = time.perf_counter()
        note = fn() or ""
        secs = time.perf_counter() - t
        rows.append((name, secs, peak_mb(), note))
        timings[name] = secs
        print(f"  {name}: {secs:.1f} s {note}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        landing, db, outbox = tmp / "landing", tmp / "acrm.duckdb", tmp / "outbox"
        summary: dict = {}

        stage(
            "demo data (parquet)",
            lambda: (
                summary.update(generate(landing, customers=args.customers, seed=42, fmt="parquet", end_date=AS_OF))
                or f"{summary['tables']['orders']:,} orders"
            ),
        )
        stage("load + quarantine", lambda: f"{sum(r.rows_loaded for r in load_all(db, landing)):,} rows loaded")

        def features(day: date) -> str:
            env = {**os.environ, "ACRM_DUCKDB_PATH": str(db), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
            cmd = [
                dbt_executable(),
                "build",
                "--vars",
                json.dumps(dbt_vars(day.isoformat())),
                "--quiet",
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--project-dir",
                str(DBT_PROJECT_DIR),
            ]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=DBT_PROJECT_DIR)
            if done.returncode:
                raise SystemExit(f"dbt build failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
            return "dbt build (models + tests)"

        folder = tmp / "segments"
        folder.mkdir()
        definitions = generate_segments(args.segments)
        (folder / "bench.yaml").write_text(yaml.safe_dump_all(definitions, sort_keys=False))
        export_folder = tmp / "exports"
        export_folder.mkdir()

        def evaluate_and_record(day: date) -> str:
            with duckdb.connect(str(db), config=Settings.from_env().duckdb_config()) as con:
                result = evaluate(con, segments, day)
                recorded = record(con, result, segments.order, {k: segments[k].version() for k in segments.order})
            changes = sum(r.entered + r.exited for r in recorded.values())
            timing = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
            return f"{len(segments)} segments, {changes:,} entries+exits ({timing})"

        def run_exports(day: date) -> str:
            sent = 0
            with duckdb.connect(str(db), config=Settings.from_env().duckdb_config()) as con:
                for key in exports.keys:
                    sent += run_export(con, exports[key], day, outbox, "bench").counts.get("sent", 0)
            return f"{len(exports)} CSV exports, {sent:,} rows sent"

        # The first partition starts the history (every member enters) and sends every export in full;
        # the next one is the nightly case the targets are about.
        for label, day in (("first day", FIRST), ("nightly", AS_OF)):
            stage(f"features (dbt on DuckDB), {label}", lambda d=day: features(d))
            if label == "first day":
                catalogue = load_catalogue(db)
                segments = load_segments([folder], catalogue)
                (export_folder / "e.yaml").write_text(
                    yaml.safe_dump_all(exports_for(segments.order, args.exports), sort_keys=False)
                )
                exports = load_exports([export_folder], segments, catalogue)
            if label == "nightly" and not args.skip_pandas:
                from tests.reference.features import read_raw, reference_features

                stage(
                    "features (plain pandas baseline), nightly",
                    lambda: f"{len(reference_features(read_raw(db), AS_OF)):,} rows",
                )
            stage(f"segments (evaluate + history), {label}", lambda d=day: evaluate_and_record(d))
            stage(f"exports (files), {label}", lambda d=day: run_exports(d))

    print(f"\n{'stage':<46}{'seconds':>10}{'peak MB':>10}  notes")
    for name, secs, mb, note in rows:
        print(f"{name:<46}{secs:>10.1f}{mb:>10.0f}  {note}")
    features_s = timings["features (dbt on DuckDB), nightly"]
    pandas_s = timings.get("features (plain pandas baseline), nightly", float("nan"))
    segments_s = timings["segments (evaluate + history), nightly"]
    exports_s = timings["exports (files), nightly"]
    print(
        f"customers={args.customers} orders={summary['tables']['orders']} features_s={features_s:.1f} "
        f"pandas_features_s={pandas_s:.1f} segments_s={segments_s:.1f} exports_s={exports_s:.1f} "
        f"total_s={features_s + segments_s + exports_s:.1f} peak_mb={peak_mb():.0f}"
    )


if __name__ == "__main__":
    main()
