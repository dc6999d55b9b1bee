"""Benchmark: the membership history's first day, nightly day and reads, at K generated segments over N customers.

    .venv/bin/python bench/history.py --customers 1000000 --segments 1000 [--rerun] [--repo PATH]

Builds bench/segments.py's synthetic marts and segments, evaluates two consecutive partitions and times
`record` for each (the first day: every member is new; the second: the nightly diff), with the DuckDB
file's growth (after a CHECKPOINT) and the size of each history table (copied alone into a fresh file).
Then times the readers on both days: `members_at` of the largest, the median and the smallest non-empty
segment, and an export's audience (`select_audience`, the membership CTE joined to the features) of the
largest. `--rerun` records the first day again, then the second (the general path: every segment
rewrites its first date and its next date's changes, then the second date against the first rebuilt from
the history). `--repo` runs another checkout's `acrm_pipelines` (e.g. the commit before, from
`git archive HEAD acrm_pipelines dbt_project bench | tar -x -C /tmp/baseline`) on the same data.
Prints a table, then one line: `customers=N segments=K first_s=… first_mb=… nightly_s=… …`.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

HERE = Path(__file__).resolve().parent


def _setup_path() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=1_000)
    parser.add_argument("--rerun", action="store_true", help="also record the first day again (the general path)")
    parser.add_argument("--repo", type=Path, default=HERE.parent, help="the checkout whose acrm_pipelines to run")
    args = parser.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))  # its acrm_pipelines (and bench/segments.py, when it has one)
    return args


def _bytes(path: Path) -> int:
    wal = Path(f"{path}.wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*")) if path.exists() else 0


def _table_bytes(con: duckdb.DuckDBPyConnection, table: str, tmp: Path) -> int:
    """The size of `table` alone: copied into a fresh DuckDB file."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name || '.' || table_name = ?", [table]
    ).fetchall()[0][0]
    if not exists:
        return 0
    path = tmp / f"size-{table}.duckdb"
    path.unlink(missing_ok=True)
    con.execute(f"ATTACH '{path}' AS sized")
    try:
        con.execute(f"CREATE TABLE sized.t AS SELECT * FROM {table}")
        con.execute("CHECKPOINT sized")
    finally:
        con.execute("DETACH sized")
    empty = tmp / "size-empty.duckdb"
    if not empty.exists():
        duckdb.connect(str(empty)).close()
    size = _bytes(path) - _bytes(empty)
    path.unlink()
    return size


def _progress(text: str) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{time.strftime('%H:%M:%S')}] {text} (peak {peak:,.0f} MB)", file=sys.stderr, flush=True)


def _best(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    args = _setup_path()
    from acrm_pipelines.exports.audience import select_audience
    from acrm_pipelines.exports.spec import Export
    from acrm_pipelines.segments.catalogue import load_catalogue
    from acrm_pipelines.segments.evaluate import evaluate
    from acrm_pipelines.segments.history import record
    from acrm_pipelines.segments.members import members_at
    from acrm_pipelines.segments.validate import load_segments
    from acrm_pipelines.settings import Settings
    from bench.segments import DAY1, DAY2, build_marts, generate_segments

    rows: list[tuple[str, str, str]] = []
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "bench.duckdb"
        con = duckdb.connect(str(db), config=Settings.from_env().duckdb_config())
        build_marts(con, args.customers, DAY1)
        folder = tmp / "segments"
        folder.mkdir()
        (folder / "bench.yaml").write_text(yaml.safe_dump_all(generate_segments(args.segments), sort_keys=False))
        segments = load_segments([folder], load_catalogue())
        versions = {k: segments[k].version() for k in segments.order}
        state_dir = Path(f"{db}.segment-state")

        def reads(day, label: str, sizes: dict[str, int]) -> None:
            ranked = sorted((s, k) for k, s in sizes.items() if s)
            picks = {"largest": ranked[-1], "median": ranked[len(ranked) // 2], "smallest": ranked[0]}
            for name, (size, key) in picks.items():
                secs, got = _best(lambda key=key: members_at(con, key, day))
                assert len(got) == size, (key, len(got), size)
                rows.append((f"{label}: members_at, {name} segment", f"{secs:.3f}", f"{size:,} members"))
                out[f"{label.replace(' ', '')}_members_{name}_s"] = secs
            size, key = picks["largest"]
            spec = {"key": "bench", "segment": key, "channel": "email", "campaign": "bench"}
            export = Export.model_validate({**spec, "destination": {"type": "csv"}})
            secs, audience = _best(lambda: select_audience(con, export, day))
            rows.append((f"{label}: audience of the largest", f"{secs:.3f}", f"{audience.table.num_rows:,} rows"))
            out[f"{label.replace(' ', '')}_audience_s"] = secs

        def record_day(day, label: str) -> dict[str, int]:
            t = time.perf_counter()
            evaluation = evaluate(con, segments, day)
            t_eval = time.perf_counter() - t
            con.execute("CHECKPOINT")
            before, state_before = _bytes(db), _folder_bytes(state_dir)
            t = time.perf_counter()
            recorded = record(con, evaluation, segments.order, versions)
            con.execute("CHECKPOINT")
            secs = time.perf_counter() - t
            grown = _bytes(db) - before
            members = sum(r.size for r in recorded.values())
            changes = sum(r.entered + r.exited for r in recorded.values())
            rows.append((f"{label}: evaluate", f"{t_eval:.2f}", ""))
            rows.append((f"{label}: record (+ checkpoint)", f"{secs:.2f}", f"{members:,} members, {changes:,} in+out"))
            rows.append((f"{label}: DuckDB file growth", f"{grown / 1e6:.1f} MB", ""))
            state = _folder_bytes(state_dir)
            rows.append((f"{label}: state files (.npy)", f"{state / 1e6:.1f} MB", f"was {state_before / 1e6:.1f} MB"))
            out[f"{label}_s"], out[f"{label}_mb"] = secs, grown / 1e6
            return {k: r.size for k, r in recorded.items()}

        _progress("marts built")
        sizes1 = record_day(DAY1, "first")
        _progress("first day recorded")
        tables = {t: _table_bytes(con, t, tmp) for t in ("segments.snapshots", "segments.changes")}
        index = _table_bytes(con, "segments.customer_index", tmp)
        rows.append(("first: snapshots table", f"{tables['segments.snapshots'] / 1e6:.1f} MB", "copied alone"))
        rows.append(("first: changes table", f"{tables['segments.changes'] / 1e6:.1f} MB", "copied alone"))
        rows.append(("customer_index table", f"{index / 1e6:.1f} MB", "the same old and new"))
        out["first_history_mb"] = sum(tables.values()) / 1e6
        reads(DAY1, "day 1", sizes1)

        _progress("day 1 read")
        sizes2 = record_day(DAY2, "nightly")
        _progress("nightly day recorded")
        tables = {t: _table_bytes(con, t, tmp) for t in ("segments.snapshots", "segments.changes")}
        rows.append(("nightly: history tables", f"{sum(tables.values()) / 1e6:.1f} MB", "snapshots + changes"))
        out["history_mb"] = sum(tables.values()) / 1e6
        reads(DAY2, "day 2", sizes2)

        _progress("day 2 read")
        if args.rerun:
            # Day 1 again: its snapshot rewritten and day 2's changes rebuilt from it. Day 2 again: diffed
            # against day 1's membership rebuilt from the history (the general path's two reads).
            for day, label in ((DAY1, "rerun"), (DAY2, "rerun2")):
                evaluation = evaluate(con, segments, day)
                t = time.perf_counter()
                record(con, evaluation, segments.order, versions)
                con.execute("CHECKPOINT")
                secs = time.perf_counter() - t
                what = f"re-run of day {1 if day == DAY1 else 2}: record (+ checkpoint)"
                rows.append((what, f"{secs:.2f}", "general path, all segments"))
                out[f"{label}_s"] = secs
                _progress(f"{what} done")
            for day, sizes in ((DAY1, sizes1), (DAY2, sizes2)):
                key = max(sizes, key=lambda k: sizes[k])
                assert len(members_at(con, key, day)) == sizes[key]
        con.close()

    print(f"\nrepo: {args.repo.resolve()}  pid {os.getpid()}")
    print(f"{'stage':<44}{'value':>12}  notes")
    for name, value, note in rows:
        print(f"{name:<44}{value:>12}  {note}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = " ".join(f"{k}={v:.3f}" for k, v in out.items())
    print(f"customers={args.customers} segments={args.segments} {summary} peak_mb={peak:.0f}")


if __name__ == "__main__":
    main()
