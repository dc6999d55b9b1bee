"""Run the demo with two checkouts of this repository and show that its results are the same.

One demo landing folder is generated once; each checkout then runs `acrm run` for two days on it with its
own code (cwd and PYTHONPATH = the checkout), its own DuckDB file, outbox and DAGSTER_HOME, and the
segments/ and exports/ folders it holds. The features, each segment's members on both days, the export
logs and the outbox files are then compared as multisets of rows (DuckDB `EXCEPT ALL` both ways).

Left out of the comparison, as noise of a run rather than behaviour:
- wall-clock times: `built_at`, `evaluated_at`, `recorded_at`, `started_at`, `finished_at`, `issued_at`;
- Dagster's run ids (`run_id`), new for every run;
- the outbox folder in `exports.runs.location` (each run has its own outbox; the path below it is kept);
- promo codes (`exports.ledger.code`, the `code` column of `*.promo_codes.csv`): drawn with `secrets`,
  unguessable by design, so only their length is compared.

    .venv/bin/python bench/compare_demo.py --base /work/base [--after DIR] [--customers 5000] [--work DIR]

--after defaults to the checkout this script is in (its working tree, uncommitted changes included).

Exits 1 when anything differs. Every checkout needs dbt_project/target/manifest.json (`make dbt-parse`).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

DAYS = (date(2026, 11, 19), date(2026, 11, 20))
NOISE = "run_id, built_at, evaluated_at, recorded_at, started_at, finished_at, issued_at"
DIFFERENCE = "(FROM b EXCEPT ALL FROM a) UNION ALL (FROM a EXCEPT ALL FROM b)"  # rows in one but not the other
GENERATE = """import sys
from datetime import date
from pathlib import Path
from acrm_pipelines.demo.generator import generate
generate(Path(sys.argv[1]), customers=int(sys.argv[2]), seed=42, fmt=sys.argv[3], end_date=date(2026, 11, 20))"""


def checkout_env(checkout: Path, out: Path, landing: Path) -> dict[str, str]:
    """The environment of one checkout's runs: its code first on the path, its own files, the shared landing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACRM_", "DAGSTER_"))}
    home = out / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkout / "dagster.yaml", home / "dagster.yaml")
    return env | {
        "PYTHONPATH": str(checkout),
        "DAGSTER_HOME": str(home),
        "ACRM_DUCKDB_PATH": str(out / "acrm.duckdb"),
        "ACRM_OUTBOX_DIR": str(out / "outbox"),
        "ACRM_LANDING_DIR": str(landing),
        "ACRM_START_DATE": "2019-01-01",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def run_checkout(checkout: Path, out: Path, landing: Path) -> float:
    """`acrm run` for each day with the checkout's own code; the output goes to out/run.log. Returns seconds."""
    env = checkout_env(checkout, out, landing)
    where = subprocess.run(
        [sys.executable, "-c", "import acrm_pipelines; print(acrm_pipelines.__file__)"],
        cwd=checkout, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not Path(where).resolve().is_relative_to(checkout.resolve()):
        raise SystemExit(f"{checkout}: acrm_pipelines is imported from {where}, not from the checkout")
    started = time.monotonic()
    with open(out / "run.log", "w") as log:
        for day in DAYS:
            command = [sys.executable, "-m", "acrm_pipelines.cli", "run", "--as-of", day.isoformat()]
            done = subprocess.run(command, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
            if done.returncode:
                raise SystemExit(f"{checkout}: `acrm run --as-of {day}` failed ({out / 'run.log'})")
    return time.monotonic() - started


def queries(keys: list[str], outbox: str) -> dict[str, str]:
    """Object name → the SQL of its rows, noise columns left out (see the module's docstring)."""
    member = "valid_from <= DATE '{0}' AND (valid_to IS NULL OR valid_to > DATE '{0}')"
    out = {
        "marts.customer_features": "FROM marts.customer_features",
        **{f"marts.customer_features_on({d})": f"FROM marts.customer_features_on(DATE '{d}')" for d in DAYS},
        "marts.customer_features_dates": "SELECT * EXCLUDE (built_at) FROM marts.customer_features_dates",
        "segments.evaluations": "SELECT * EXCLUDE (evaluated_at) FROM segments.evaluations",
        "segments.changelog": "FROM segments.changelog",
    }
    for key in keys:
        for d in DAYS:
            out[f"members {key} {d}"] = (
                f"SELECT customer_id, arm FROM segments.membership WHERE segment_key = '{key}' AND {member.format(d)}"
            )
    return out | {
        "exports.deliveries": "SELECT * EXCLUDE (run_id, recorded_at) FROM exports.deliveries",
        "exports.runs": "SELECT * EXCLUDE (run_id, started_at, finished_at) "
        f"REPLACE (replace(location, '{outbox}', '<outbox>') AS location) FROM exports.runs",
        "exports.audience_changes": "FROM exports.audience_changes",
        "exports.ledger": "SELECT * EXCLUDE (issued_at) REPLACE (length(code) AS code) FROM exports.ledger",
    }


def fetch(path: Path, sql: str) -> pa.Table | None:
    """The rows of `sql` in the DuckDB file (read-only), None when the object does not exist there."""
    with duckdb.connect(str(path), read_only=True) as con:
        try:
            return con.sql(sql).to_arrow_table()
        except duckdb.CatalogException:
            return None


def same(before: pa.Table | None, after: pa.Table | None) -> bool:
    """The same columns and types, and the same rows as multisets."""
    if before is None or after is None or before.schema != after.schema:
        return before is None and after is None
    with duckdb.connect() as con:
        con.register("b", before)
        con.register("a", after)
        return con.execute(f"SELECT count(*) FROM ({DIFFERENCE})").fetchone()[0] == 0


def outbox_files(outbox: Path) -> dict[str, tuple[int, bytes]]:
    """Each file below the outbox: its path there → (rows, content); promo codes replaced by their length."""
    files = {}
    for path in sorted(p for p in outbox.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".parquet":
            rows = pq.ParquetFile(path).metadata.num_rows
        else:
            table = list(csv.reader(io.StringIO(data.decode())))
            rows = len(table) - 1
            if path.name.endswith(".promo_codes.csv"):
                i = table[0].index("code")
                buffer = io.StringIO()
                csv.writer(buffer).writerows([r[:i] + [str(len(r[i]))] + r[i + 1 :] for r in table[1:]])
                data = buffer.getvalue().encode()
        files[path.relative_to(outbox).as_posix()] = (rows, data)
    return files


def compare(base: Path, after: Path) -> list[tuple[str, int | None, int | None, bool]]:
    """(object, rows before, rows after, identical) for every object compared."""
    keys: set[str] = set()
    for side in (base, after):
        table = fetch(side / "acrm.duckdb", "SELECT DISTINCT segment_key FROM segments.evaluations")
        keys |= set() if table is None else set(table.column(0).to_pylist())
    sql_before = queries(sorted(keys), str(base / "outbox"))
    sql_after = queries(sorted(keys), str(after / "outbox"))
    result = []
    for name in sql_before:
        b, a = fetch(base / "acrm.duckdb", sql_before[name]), fetch(after / "acrm.duckdb", sql_after[name])
        result.append((name, None if b is None else b.num_rows, None if a is None else a.num_rows, same(b, a)))
    fb, fa = outbox_files(base / "outbox"), outbox_files(after / "outbox")
    for rel in sorted(fb.keys() | fa.keys()):
        b, a = fb.get(rel), fa.get(rel)
        rows = (None if b is None else b[0], None if a is None else a[0])
        result.append((f"outbox/{rel}", *rows, b is not None and a is not None and b[1] == a[1]))
    return result


def _count(rows: int | None) -> str:
    return "missing" if rows is None else f"{rows:,}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the checkout before (e.g. a git worktree)")
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parent.parent, help="the checkout after")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--work", type=Path, help="folder for the landing data and both runs (default: a new temp)")
    parser.add_argument("--compare-only", action="store_true", help="compare the runs already in --work")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="acrm-compare-"))
    landing, before, after = work / "landing", work / "before", work / "after"

    started = time.monotonic()
    if not args.compare_only:
        for folder in (before, after):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        command = [sys.executable, "-c", GENERATE, str(landing), str(args.customers), args.format]
        subprocess.run(command, cwd=args.after, env=os.environ | {"PYTHONPATH": str(args.after)}, check=True)
        print(f"demo landing: {landing} ({args.customers:,} customers, seed 42, {time.monotonic() - started:.1f} s)")
        for checkout, out in ((args.base, before), (args.after, after)):
            seconds = run_checkout(checkout.resolve(), out, landing)
            print(f"{checkout}: acrm run --as-of {DAYS[0]}, then {DAYS[1]} ({seconds:.1f} s; {out})")

    rows = compare(before, after)
    width = max(len(r[0]) for r in rows)
    print(f"\nnot compared (run noise): {NOISE}; promo codes by length; the outbox folder in locations\n")
    print(f"{'object':<{width}}  {'before':>9}  {'after':>9}  identical")
    for name, b, a, ok in rows:
        print(f"{name:<{width}}  {_count(b):>9}  {_count(a):>9}  {'yes' if ok else 'NO'}")
    differ = [r[0] for r in rows if not r[3]]
    print(
        f"\n{len(rows) - len(differ)} of {len(rows)} identical" + (f"; differ: {', '.join(differ)}" if differ else "")
    )
    print(f"total {time.monotonic() - started:.1f} s")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
