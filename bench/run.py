"""Benchmark: the path users run — `acrm run` through Dagster — for a first day, a nightly day and a backfill.

    .venv/bin/python bench/run.py --customers 1000000 --segments 1000 --exports 20 \
        [--years 6] [--backfill-days 30] [--skip-pandas] [--baseline-repo DIR] [--work DIR] \
        [--engine spark [--spark-driver-memory 12g]]

Writes demo data (Parquet) up to the nightly date, moves that date's rows (customers registered that
day, their orders and lines, events, messages, bonus rows) into one new part file per table, and
generates `--segments` segments (bench/segments.py's generator) and `--exports` CSV exports of the
first ones. Then, on a fresh DuckDB file and DAGSTER_HOME (the repo's dagster.yaml, SQLite storage):

1. `acrm run --as-of FIRST`: the first day, every table loaded, every export sent in full;
2. the day's new files land, `acrm run --as-of NIGHT`: the nightly case the targets are about;
3. with `--backfill-days N`, `acrm backfill` of the N days before FIRST (exports held, as by default).

Per run it prints the wall time, Dagster's own step times summed per stage (load, checks, features,
segments, exports), `other_s`: what no step accounts for (starting Python, loading the definitions,
run start and end, the events between steps), and the run's peak resident memory. The features step is
compared with a plain-pandas computation of the same features (tests/reference/features.py) in the same
run, in its own process. With `--baseline-repo` (another checkout, e.g. a git worktree of an earlier
commit with `dbt parse` run in its dbt_project) the same data goes through it too. With `--engine spark`
the same runs follow with ACRM_ENGINE=spark (a local session, `local[2]`; docs/spark.md), beside DuckDB's
in the same table; the peak memory then counts the JVMs of the run's child processes too.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.segments import generate_segments  # noqa: E402

NIGHT = date(2026, 11, 20)  # the nightly partition
FIRST = NIGHT - timedelta(days=1)  # the partition before it, which starts the history
NEW_PART = f"part-99000-{NIGHT.isoformat()}.parquet"  # sorts after the demo's parts, as a day's files do
# The rows that arrive on NIGHT, per table (order lines follow their order).
DAY_ROWS = {
    "customers": "registered_at",
    "orders": "ordered_at",
    "events": "occurred_at",
    "messages": "sent_at",
    "bonus_transactions": "occurred_at",
}
STAGES = ("load", "checks", "features", "segments", "exports", "analytics")
ANALYTICS_STEPS = ("dbt_analytics", "campaign_uplift", "segment_portrait")


def stage_of(step_key: str) -> str:
    """The stage a step of the daily job belongs to, by the step keys the definitions give."""
    if "_gx_" in step_key or step_key.endswith(("_fresh_activity", "_delivered")) or "check" in step_key:
        return "checks"
    if step_key.startswith("raw_"):
        return "load"
    if step_key.startswith(ANALYTICS_STEPS):
        return "analytics"
    if step_key.startswith("dbt"):
        return "features"
    if step_key.startswith("exports__"):
        return "exports"
    return "segments"


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


def split_day(landing: Path, new: Path) -> dict[str, int]:
    """Move NIGHT's rows out of the demo parts into `new/<table>/NEW_PART`; rows moved per table."""
    moved: dict[str, int] = {}
    con = duckdb.connect()
    day = f"DATE '{NIGHT.isoformat()}'"
    for name, column in (*DAY_ROWS.items(), ("order_lines", None)):
        parts = sorted((landing / name).glob("*.parquet"))
        if column:
            on_day = f"coalesce(try_cast({column} AS TIMESTAMP)::DATE = {day}, false)"
        else:  # lines of the orders that moved
            on_day = f"order_id IN (SELECT order_id FROM read_parquet('{new / 'orders' / NEW_PART}'))"
        (new / name).mkdir(parents=True, exist_ok=True)
        files = ", ".join(f"'{p}'" for p in parts)
        con.execute(
            f"COPY (SELECT * FROM read_parquet([{files}], union_by_name = true) WHERE {on_day}) "
            f"TO '{new / name / NEW_PART}'"
        )
        moved[name] = con.execute(f"SELECT count(*) FROM read_parquet('{new / name / NEW_PART}')").fetchone()[0]
        for part in parts:
            kept = part.with_suffix(".kept")
            con.execute(f"COPY (SELECT * FROM read_parquet('{part}') WHERE NOT {on_day}) TO '{kept}' (FORMAT parquet)")
            kept.replace(part)
    return moved


def python(repo: Path) -> str:
    """The checkout's own venv, or this one (the checkout's code still comes first on PYTHONPATH)."""
    own = repo / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


def _tree_rss_mb(root: int) -> float:
    """The resident memory of `root` and all its descendants, now (MB)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, ppid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[1])
            rss[pid] = int((stat.parent / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total / 2**20


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    """Run `cmd`; its wall seconds, its peak resident MB (the whole process tree, sampled every half
    second: a JVM that dbt-spark starts is a grandchild no wait reports), stdout."""
    started = time.perf_counter()
    peak = [0.0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                peak[0] = max(peak[0], _tree_rss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[-4:])} failed ({proc.returncode}):\n{stdout[-2000:]}\n{stderr[-3000:]}")
    return wall, max(peak[0], usage.ru_maxrss / 1024), stdout


def step_seconds(repo: Path, home: Path, runs: int) -> list[dict[str, float]]:
    """Step durations of the latest `runs` runs (oldest first), read with `repo`'s own Python and Dagster."""
    code = (
        "import json, sys; from dagster import DagsterInstance; i = DagsterInstance.get();"
        f"rs = i.get_runs(limit={runs})[::-1];"
        "print(json.dumps([{s.step_key: s.end_time - s.start_time for s in i.get_run_step_stats(r.run_id)"
        " if s.end_time and s.start_time} for r in rs]))"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(repo)}
    done = subprocess.run([python(repo), "-c", code], env=env, capture_output=True, text=True, check=True)
    return yaml.safe_load(done.stdout.strip().splitlines()[-1])


class Bench:
    def __init__(self, work: Path, landing: Path, new: Path, args: argparse.Namespace):
        self.work, self.landing, self.new, self.args = work, landing, new, args
        self.rows: list[dict] = []
        self.outcomes: dict[str, tuple[list, dict[str, str]]] = {}  # per label: evaluations, export file digests

    def env(self, repo: Path, home: Path, engine: str) -> dict:
        return {
            **os.environ,
            "ACRM_ENGINE": engine,
            "ACRM_SPARK_DIR": str(self.work / "spark"),
            "ACRM_SPARK_DRIVER_MEMORY": self.args.spark_driver_memory,
            "PYTHONPATH": str(repo),
            "DAGSTER_HOME": str(home),
            "ACRM_LANDING_DIR": str(self.landing),
            "ACRM_DUCKDB_PATH": str(self.work / "acrm.duckdb"),
            "ACRM_SEGMENTS_DIR": str(self.work / "segments"),
            "ACRM_EXPORTS_DIR": str(self.work / "exports"),
            "ACRM_JOURNEYS_DIR": str(self.work / "journeys"),  # none: the generated segments are not the repo's
            "ACRM_OUTBOX_DIR": str(self.work / "outbox"),
            "ACRM_START_DATE": "2024-01-01",
        }

    def run(self, label: str, repo: Path, engine: str = "duckdb") -> None:
        shutil.rmtree(self.work / "spark", ignore_errors=True)
        for leftover in self.work.glob("acrm.duckdb*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        shutil.rmtree(self.work / "outbox", ignore_errors=True)
        for name in (*DAY_ROWS, "order_lines"):  # the first day has not seen the night's files yet
            (self.landing / name / NEW_PART).unlink(missing_ok=True)
        home = self.work / f"home-{label}"
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        shutil.copy(repo / "dagster.yaml", home / "dagster.yaml")
        env = self.env(repo, home, engine)
        acrm = [python(repo), "-m", "acrm_pipelines.cli"]
        plan = [("first day", FIRST, ["run", "--as-of", FIRST.isoformat()])]
        plan.append(("nightly", NIGHT, ["run", "--as-of", NIGHT.isoformat()]))
        if self.args.backfill_days:
            start = FIRST - timedelta(days=self.args.backfill_days)
            to = FIRST - timedelta(days=1)
            plan.append(
                (
                    f"backfill {self.args.backfill_days} d",
                    None,
                    ["backfill", "--from", start.isoformat(), "--to", to.isoformat()],
                )
            )
        for what, day, cmd in plan:
            if day == NIGHT:
                for name in (*DAY_ROWS, "order_lines"):
                    shutil.copy(self.new / name / NEW_PART, self.landing / name / NEW_PART)
            wall, peak, _ = timed(acrm + cmd, env, repo)
            runs = self.args.backfill_days if day is None else 1
            per_stage = dict.fromkeys(STAGES, 0.0)
            for steps in step_seconds(repo, home, runs):
                for key, secs in steps.items():
                    per_stage[stage_of(key)] += secs
            other = wall - sum(per_stage.values())
            row = {"checkout": label, "run": what, "wall_s": wall, **per_stage, "other_s": other, "peak_mb": peak}
            self.rows.append(row)
            print(
                "  " + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
            if day == NIGHT:
                self.outcomes[label] = self.outcome()
            if day == NIGHT and label == "this" and engine == "duckdb" and not self.args.skip_pandas:
                self.pandas_features(repo, env)

    def outcome(self) -> tuple[list, dict[str, str]]:
        """What the runs decided and sent: each segment's size, entered and exited per day, and a digest of
        every export file (the same on both engines when they agree)."""
        with duckdb.connect(str(self.work / "acrm.duckdb"), read_only=True) as con:
            evaluations = con.execute(
                "SELECT as_of, segment_key, size, entered, exited FROM segments.evaluations ORDER BY 1, 2"
            ).fetchall()
        outbox = self.work / "outbox"
        digests = {
            str(f.relative_to(outbox)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(outbox.rglob("*"))
            if f.is_file()
        }
        return evaluations, digests

    def agreement(self) -> str:
        """How the other runs compare with the first one's outcome."""
        (first, (evaluations, digests)), *others = self.outcomes.items()
        lines = []
        for label, (theirs, their_digests) in others:
            same = sum(a == b for a, b in zip(evaluations, theirs, strict=False))
            files = sum(their_digests.get(name) == digest for name, digest in digests.items())
            lines.append(
                f"{label} against {first}: {same:,} of {len(evaluations):,} segment evaluations (size, entered, "
                f"exited) and {files} of {len(digests)} export files the same"
            )
        return "\n".join(lines)

    def pandas_features(self, repo: Path, env: dict) -> None:
        code = (
            "import time; from pathlib import Path; from tests.reference.features import read_raw, reference_features;"
            f"raw = read_raw(Path({str(self.work / 'acrm.duckdb')!r})); t = time.perf_counter();"
            f"n = len(reference_features(raw, __import__('datetime').date.fromisoformat({NIGHT.isoformat()!r})));"
            "print(n, time.perf_counter() - t)"
        )
        wall, peak, out = timed([python(repo), "-c", code], env, repo)
        n, secs = out.split()[-2:]
        row = {"checkout": "pandas", "run": "features, nightly", "wall_s": wall, **dict.fromkeys(STAGES, 0.0)}
        row.update(features=float(secs), other_s=wall - float(secs), peak_mb=peak)
        self.rows.append(row)
        print(
            f"  pandas reference features: {int(n):,} rows in {float(secs):.1f} s (read included: {wall:.1f} s)",
            flush=True,
        )

    def table(self) -> str:
        head = ["checkout", "run", "wall_s", *(f"{s}_s" for s in STAGES), "other_s", "peak_mb"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [r["checkout"], r["run"], f"{r['wall_s']:.1f}", *(f"{r[s]:.1f}" for s in STAGES)]
            lines.append("| " + " | ".join([*cells, f"{r['other_s']:.1f}", f"{r['peak_mb']:,.0f}"]) + " |")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=1_000)
    parser.add_argument("--exports", type=int, default=20)
    parser.add_argument("--years", type=int, default=6, help="years of demo history (6 gives ~10 orders a customer)")
    parser.add_argument("--backfill-days", type=int, default=0, help="then backfill this many days before the first")
    parser.add_argument("--skip-pandas", action="store_true", help="leave out the pandas features baseline")
    parser.add_argument("--baseline-repo", type=Path, help="another checkout to run on the same data")
    parser.add_argument("--work", type=Path, help="work folder (kept; default: a temporary one, removed)")
    parser.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb", help="spark: also on Spark")
    parser.add_argument("--spark-driver-memory", default="12g", help="the local Spark session's (with --engine spark)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="acrm-bench-run-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        from acrm_pipelines.demo.generator import generate

        landing, new = work / "landing", work / "new"
        t = time.perf_counter()
        summary = generate(landing, customers=args.customers, seed=42, fmt="parquet", end_date=NIGHT, years=args.years)
        moved = split_day(landing, new)
        print(
            f"demo data: {time.perf_counter() - t:.0f} s, {summary['tables']} ; the night's new rows: {moved}",
            flush=True,
        )
        definitions = generate_segments(args.segments)
        (work / "segments").mkdir(exist_ok=True)
        (work / "segments" / "generated.yaml").write_text(yaml.safe_dump_all(definitions, sort_keys=False))
        (work / "exports").mkdir(exist_ok=True)
        keys = [d["key"] for d in definitions]
        if args.exports:
            exports = exports_for(keys, args.exports)
            (work / "exports" / "bench.yaml").write_text(yaml.safe_dump_all(exports, sort_keys=False))
        bench = Bench(work, landing, new, args)
        for label, repo in [("this", ROOT)] + (
            [("baseline", args.baseline_repo.resolve())] if args.baseline_repo else []
        ):
            bench.run(label, repo)
        if args.engine == "spark":
            bench.run("this-spark", ROOT, engine="spark")
        print(
            f"\ncustomers={args.customers:,} orders={summary['tables']['orders']:,} segments={args.segments:,} "
            f"exports={args.exports}\n"
        )
        print(bench.table())
        if len(bench.outcomes) > 1:
            print("\n" + bench.agreement())
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
