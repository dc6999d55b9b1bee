"""The `acrm` command (the contract in docs/settings-and-cli.md). Errors go to stderr with exit code 1."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from acrm_pipelines import terminal
from acrm_pipelines.settings import Settings, quiet_telemetry


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from acrm_pipelines.demo.generator import generate

    started = time.monotonic()
    summary = generate(settings.landing_dir, customers=args.customers, seed=args.seed, fmt=args.format)
    print(f"demo data: {settings.landing_dir} ({time.monotonic() - started:.1f} s)")
    for name, rows in summary["tables"].items():
        bad = sum(summary["bad_rows"].get(name, {}).values())
        print(f"  {name:<20}{rows:>12,} rows ({bad} deliberately bad)")
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from acrm_pipelines.automation.runner import run_partition
    from acrm_pipelines.definitions import defs

    summary = run_partition(defs, settings, args.as_of, log_level="INFO" if args.verbose else "WARNING")
    print("\n".join(summary.lines(every_segment=args.verbose)))
    print(f"\nDuckDB file: {settings.duckdb_path}")
    print("             marts.customer_features, raw.quarantine, segments.membership, segments.evaluations")
    if summary.segments:
        key = sorted(summary.segments)[0]
        print(f"Segments:    .venv/bin/acrm members {key} --as-of {args.as_of}   (docs/segments.md)")
    print(f"Analytics:   .venv/bin/acrm report --as-of {args.as_of}   (docs/analytics.md)")
    print("Dagster UI:  make ui  →  http://127.0.0.1:3000")
    return 1 if summary.segments_failed else 0


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    from acrm_pipelines.automation.runner import backfill
    from acrm_pipelines.definitions import defs

    start, end = _as_of(args.start, "--from"), _as_of(args.end, "--to")
    started = time.monotonic()

    def report(summary) -> None:
        changes = sum(e + x for _, e, x in summary.segments.values())
        sent = sum(m.get("sent", 0) for m in summary.exports.values())
        held = sum(1 for m in summary.exports.values() if m.get("not_sent"))
        print(
            f"{summary.as_of}: {summary.customers_featured:,} customers, {len(summary.segments)} segments "
            f"({changes:,} entries+exits), {sent:,} sent by {len(summary.exports) - held} exports"
            + (f" ({held} sent nothing)" if held else "")
            + f", {summary.seconds:.1f} s"
        )

    summaries = backfill(
        defs,
        settings,
        start,
        end,
        after_each=report,
        send_exports=args.with_exports,
        log_level="INFO" if args.verbose else "WARNING",
    )
    print(f"backfilled {len(summaries)} partitions in {time.monotonic() - started:.1f} s")
    if not args.with_exports and any(s.exports for s in summaries):
        print("exports sent nothing for these dates (a backfill recomputes history only; --with-exports sends)")
    return 0


def _as_of(value: str, option: str = "--as-of") -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"{option}: expected a date YYYY-MM-DD, got {value!r}") from err


def _segments(settings: Settings, paths: Sequence[str] = ()):
    from acrm_pipelines.segments.catalogue import load_catalogue
    from acrm_pipelines.segments.validate import load_segments
    from acrm_pipelines.settings import REPO_ROOT

    targets = [Path(p) for p in paths] or [settings.segments_dir]
    for target in targets:
        if not target.exists():
            raise FileNotFoundError(f"{target}: no such file or folder")
    return load_segments(targets, load_catalogue(settings.duckdb_path), root=REPO_ROOT)


def _segment(settings: Settings, key: str):
    segments = _segments(settings)
    if key not in segments:
        raise ValueError(f"unknown segment {key!r} (segments in {settings.segments_dir}: {len(segments)})")
    return segments


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    """The segments and exports of PATH… (default: all of ACRM_SEGMENTS_DIR and ACRM_EXPORTS_DIR), each checked
    with the whole project; errors and warnings as file:line: field: message on stderr."""
    from acrm_pipelines.project_check import validate_project
    from acrm_pipelines.settings import REPO_ROOT

    report = validate_project(settings, [Path(p) for p in args.paths], root=REPO_ROOT)
    for problem in sorted([*report.errors, *report.warnings], key=lambda e: (e.file, e.line, e.field)):
        print(problem, file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if report.elsewhere:
        print(
            f"note: {report.elsewhere} error(s) in other files of the project (`acrm validate` lists them)",
            file=sys.stderr,
        )
    if report.errors or (args.strict and report.warnings):
        print(f"acrm validate: {len(report.errors)} error(s), {len(report.warnings)} warning(s)", file=sys.stderr)
        return 1
    levels = report.segments.levels()
    if report.checked["segments"] or not args.paths:
        print(f"{report.checked['segments']} segments valid ({len(levels)} dependency levels in the project)")
    if report.checked["exports"] or not args.paths:
        print(f"{report.checked['exports']} exports valid")
    if report.checked["journeys"] or not args.paths:
        print(f"{report.checked['journeys']} journeys valid")
    if report.warnings:
        print(f"{len(report.warnings)} warning(s) (filter values the loaded data does not hold; see stderr)")
    return 0


def _read_only(settings: Settings):
    import duckdb

    if not settings.duckdb_path.exists():
        raise FileNotFoundError(f"{settings.duckdb_path}: no DuckDB file yet; run `acrm run --as-of DATE` first")
    return duckdb.connect(str(settings.duckdb_path), read_only=True, config=settings.duckdb_config())


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    from acrm_pipelines.features.history import FeaturesNotBuilt, current_day, day_to_read, feature_columns
    from acrm_pipelines.segments.catalogue import load_catalogue
    from acrm_pipelines.segments.compile import explain_sql

    segments = _segment(settings, args.key)
    as_of = _as_of(args.as_of) if args.as_of else date.today() - timedelta(days=1)
    day = None
    types: dict[str, str] = {}  # the features' SQL types: a by_field arm's text outside DuckDB depends on them
    if settings.duckdb_path.exists():
        with _read_only(settings) as con:
            with contextlib.suppress(FeaturesNotBuilt):  # nothing built yet: the SQL reads the current table
                day = day_to_read(con, as_of)
            if day == current_day(con):
                day = None
            types = feature_columns(con)
    if day is not None and args.dialect != "duckdb":
        print(
            f"note: the features of {day} are in DuckDB's history only; this SQL reads the current ones",
            file=sys.stderr,
        )
        day = None
    catalogue = load_catalogue(settings.duckdb_path)
    print(explain_sql(args.key, segments, catalogue, as_of, dialect=args.dialect, features_day=day, column_types=types))
    return 0


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate without saving anything: count, arms, a sample, time taken."""
    from acrm_pipelines.features.history import features_on
    from acrm_pipelines.segments.evaluate import evaluate

    segments = _segment(settings, args.key)
    as_of = _as_of(args.as_of)
    started = time.monotonic()
    with _read_only(settings) as con:
        features = features_on(con, as_of)
        result = evaluate(con, segments, as_of, keys=[args.key], features=features.relation)
        sample = result.members(args.key)[: args.sample]
        columns = ["customer_id", "first_name", "city", "orders_count", "total_amount", "recency_days", "rfm_segment"]
        relation = ".".join(features.relation)
        rows = con.execute(
            f"SELECT {', '.join(columns)} FROM {relation} WHERE customer_id IN (SELECT unnest(?)) ORDER BY customer_id",
            [sample],
        ).fetchall()
    if features.day != as_of:
        print(
            f"note: the latest features built on or before {as_of} are of {features.day}; "
            f"behaviour windows are cut at {as_of}"
        )
    print(
        f"{args.key} as of {as_of}: {result.size(args.key):,} of {result.n:,} customers "
        f"({time.monotonic() - started:.2f} s, nothing saved)"
    )
    for arm, n in result.arm_sizes(args.key).items():
        print(f"  arm {arm}: {n:,}")
    print("  ".join(columns))
    for row in rows:
        print("  ".join("" if v is None else str(v) for v in row))
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from acrm_pipelines.analytics.report import write_report

    as_of = _as_of(args.as_of)
    path = Path(args.output) if args.output else settings.duckdb_path.parent / "reports" / f"report-{as_of}.html"
    with _read_only(settings) as con:
        charts = write_report(con, as_of, path)
    print(f"{path} ({charts} charts)")
    return 0


def _members(args: argparse.Namespace, settings: Settings) -> int:
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    from acrm_pipelines.segments.lookup import members_day
    from acrm_pipelines.segments.members import evaluated_dates, members_at

    segment = _segment(settings, args.key)[args.key]
    as_of = _as_of(args.as_of)
    with _read_only(settings) as con:
        # Not known (before the first evaluation, after the last of a segment every run re-evaluates): exit 1.
        day, notes = members_day(args.key, segment, evaluated_dates(con, args.key), as_of)
        rows = members_at(con, args.key, day)
    for note in notes:
        print(note, file=sys.stderr)
    if not rows:
        print(f"note: {args.key} has no members as of {as_of}", file=sys.stderr)
    if args.format == "parquet":
        if not args.output:
            raise ValueError("--format parquet needs --output FILE")
        pq.write_table(pa.table({"customer_id": [r[0] for r in rows], "arm": [r[1] for r in rows]}), args.output)
        print(f"{len(rows):,} members of {args.key} as of {as_of} written to {args.output}")
        return 0
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    writer = csv.writer(out)
    writer.writerow(["customer_id", "arm"])
    writer.writerows(rows)
    if args.output:
        out.close()
    return 0


def _segments_of(args: argparse.Namespace, settings: Settings) -> int:
    from acrm_pipelines.segments.lookup import segments_of_notes
    from acrm_pipelines.segments.members import segments_of
    from acrm_pipelines.yaml_specs import DefinitionErrors

    as_of = _as_of(args.as_of)
    try:  # which segments are static or inactive (frozen); the history answers without them too
        segments = _segments(settings)
        definitions = {k: segments[k] for k in segments.definitions}
    except (DefinitionErrors, FileNotFoundError):
        definitions = {}
    with _read_only(settings) as con:
        # An unknown customer, a date before any evaluation or after the last run: exit 1, never an empty answer.
        notes = segments_of_notes(con, args.customer_id, as_of, definitions)
        rows = segments_of(con, args.customer_id, as_of)
    for key, arm in rows:
        print(key if arm is None else f"{key}\tarm={arm}")
    for note in notes:
        print(note, file=sys.stderr)
    if not rows:
        print(f"customer {args.customer_id} is in no segment as of {as_of}", file=sys.stderr)
    return 0


def _exports_status(args: argparse.Namespace, settings: Settings) -> int:
    """The latest run of every export: date, status, counts, where it went, the error if it failed."""
    import json

    from acrm_pipelines.sql import table_exists

    with _read_only(settings) as con:
        exists = table_exists(con, "exports", "runs")
        rows = (
            []
            if not exists
            else con.execute(
                """SELECT export_key, as_of, status, destination, mode, counts, location, error, finished_at
            FROM exports.runs QUALIFY row_number() OVER (PARTITION BY export_key ORDER BY started_at DESC) = 1
            ORDER BY export_key"""
            ).fetchall()
        )
    if not rows:
        print("no export has run yet")
        return 0
    print(f"{'export':<26}{'as of':<12}{'status':<9}{'sent':>8}{'supp.':>8}{'held':>7}{'rej.':>6}  destination")
    failed = 0
    for key, as_of, status, dest, mode, counts, location, error, _ in rows:
        c = json.loads(counts) if counts else {}
        print(
            f"{key:<26}{as_of!s:<12}{status:<9}{c.get('sent', 0):>8,}{c.get('suppressed', 0):>8,}"
            f"{c.get('held_back', 0):>7,}{c.get('rejected', 0):>6,}  {dest} ({mode}) {location or ''}"
        )
        if error:
            failed += 1
            print(f"    error: {error}")
    return 1 if failed and args.fail_on_error else 0


def _journey_set(settings: Settings):
    """The journeys and the exports they send."""
    from acrm_pipelines.exports.validate import load_export_set
    from acrm_pipelines.journeys.validate import load_journey_set
    from acrm_pipelines.segments.validate import load_segment_set

    segments = load_segment_set(settings)
    exports = load_export_set(settings, segments)
    return load_journey_set(settings, segments, exports), exports


def _tick_time(args: argparse.Namespace):
    """The end of --as-of (the nightly tick of that day), or --at."""
    from datetime import datetime

    from acrm_pipelines.journeys.facts import cutoff

    if args.at:
        try:
            return datetime.fromisoformat(args.at)
        except ValueError:
            raise ValueError(f"--at: expected YYYY-MM-DD HH:MM (UTC), got {args.at!r}") from None
    if not args.as_of:
        raise ValueError("give --as-of YYYY-MM-DD (the tick at the end of that day) or --at 'YYYY-MM-DD HH:MM'")
    return cutoff(_as_of(args.as_of))


def _spark_run(args: argparse.Namespace, settings: Settings) -> int:
    """Build the features for a day on Spark from the loaded raw tables and evaluate every segment there; with
    --compare, also on DuckDB's features of that day, and report every segment whose members or arms differ."""
    import duckdb

    from acrm_pipelines import spark as engine
    from acrm_pipelines.features.history import current_day, features_on
    from acrm_pipelines.features.spark_build import build_on_spark, compare_features
    from acrm_pipelines.segments.evaluate import evaluate
    from acrm_pipelines.segments.evaluate_spark import evaluate_spark

    as_of = _as_of(args.as_of)
    segments = _segments(settings)
    started = time.monotonic()
    session = engine.session(settings, verbose=args.verbose)
    build = build_on_spark(settings, session, as_of, verbose=args.verbose)
    built = time.monotonic() - started
    rows = sum(build.rows.values())
    print(f"Spark ({settings.spark_master}): {rows:,} raw rows published, features built as of {as_of}")
    print(f"  in {built:.1f} s (warehouse {settings.spark_dir / 'warehouse'})")
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        t = time.monotonic()
        spark = evaluate_spark(session, con, segments, as_of)
        print(f"{len(segments.order)} segments evaluated on Spark in {time.monotonic() - t:.1f} s")
        duck = None
        failed_features = False
        if args.compare:
            if current_day(con) != as_of:  # the fact views are cut at the day last built, like the features
                raise ValueError(
                    f"--compare needs DuckDB's features of {as_of} as the current ones (they are of "
                    f"{current_day(con)}, and its fact views are cut there): run `acrm run --as-of {as_of}` first"
                )
            features = features_on(con, as_of, exact=True)
            relation = ".".join(features.relation)
            problems = compare_features(
                con.sql(f"SELECT * FROM {relation} ORDER BY customer_id").to_arrow_table(),
                session.sql("SELECT * FROM marts.customer_features ORDER BY customer_id").toArrow(),
            )
            columns = len(session.table("marts.customer_features").columns)
            print(f"features: {'equal' if not problems else 'DIFFERENT'} to DuckDB's of {as_of} ({columns} columns)")
            for name, problem in problems.items():
                print(f"  {name}: {problem}")
            failed_features = bool(problems)
            duck = evaluate(con, segments, as_of, features=features.relation)
    print(f"\n{'segment':<32}{'members':>10}" + (f"{'DuckDB':>10}  same" if duck else ""))
    different: list[str] = []
    for key in segments.order:
        if key in spark.failed:
            print(f"{key:<32}{'failed':>10}  {spark.failed[key]}")
            different.append(key)
            continue
        line = f"{key:<32}{spark.size(key):>10,}"
        if duck is not None:
            same = (
                key not in duck.failed and duck.members(key) == spark.members(key) and duck.arms(key) == spark.arms(key)
            )
            line += f"{duck.size(key) if key not in duck.failed else 'failed':>10}  {'yes' if same else 'NO'}"
            if not same:
                different.append(key)
        print(line)
    if duck is not None:
        print(
            f"\n{len(segments.order) - len(different)} of {len(segments.order)} segments have the same members and arms"
        )
    return 1 if different or failed_features else 0


def _journeys_plan(args: argparse.Namespace, settings: Settings) -> int:
    """What a tick would do, sending and writing nothing: per journey the counts, then the sends."""
    from acrm_pipelines.journeys import run

    journeys, _ = _journey_set(settings)
    keys = args.keys or journeys.keys
    unknown = [k for k in keys if k not in journeys]
    if unknown:
        raise ValueError(f"unknown journey {unknown[0]!r} (journeys in {settings.journeys_dir}: {len(journeys)})")
    now = _tick_time(args)
    with _read_only(settings) as con:
        plans = run.plan(con, journeys, now, keys)
    print(f"A tick at {now:%Y-%m-%d %H:%M} UTC would (nothing is sent or written):")
    for plan in plans:
        said = ", ".join(f"{what} {n:,}" for what, n in sorted(plan.counts().items())) or "do nothing"
        print(f"  {plan.journey}: {plan.skipped or said}")
        for send in sorted(plan.sends, key=lambda s: (s.due_at, s.customer_id))[: args.limit]:
            due = f"{send.due_at:%Y-%m-%d %H:%M}"
            print(f"    send {send.export_key} to {send.customer_id} at step {send.node}, due {due}")
        if len(plan.sends) > args.limit:
            print(f"    … and {len(plan.sends) - args.limit:,} more sends (--limit)")
    return 0


def _journeys_status(args: argparse.Namespace, settings: Settings) -> int:
    """Per journey and step: waiting, sent, suppressed, converted, exited."""
    from acrm_pipelines.analytics.attribution import attribution_vars
    from acrm_pipelines.journeys import status

    journeys, exports = _journey_set(settings)
    windows = attribution_vars(exports, settings.attribution_window)
    with _read_only(settings) as con:
        for key in args.keys or journeys.keys:
            summary = status.by_step(con, key, windows)
            print(
                f"{key}: entered {summary.entered:,}, in the journey {summary.active:,}, "
                f"completed {summary.completed:,}, exited {summary.exited:,}"
            )
            if summary.steps:
                print(f"  {'step':<16}" + "".join(f"{c:>12}" for c in status.COLUMNS[1:]))
            for step, *values in summary.steps:
                print(f"  {step:<16}" + "".join(f"{v:>12,}" for v in values))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acrm", description="ACRM pipelines: segments and exports as code.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="write a deterministic demo landing folder to ACRM_LANDING_DIR")
    demo.add_argument("--customers", type=int, default=20_000)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--format", choices=["csv", "parquet"], default="csv")
    demo.set_defaults(handler=_demo)

    run = sub.add_parser("run", help="materialize the whole graph for one as-of date, in-process through Dagster")
    run.add_argument("--as-of", required=True, metavar="YYYY-MM-DD")
    run.set_defaults(handler=_run)

    backfill = sub.add_parser("backfill", help="run every daily partition of a date range, point-in-time, in order")
    backfill.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument(
        "--with-exports",
        action="store_true",
        help="also send the exports for these dates (default: nothing leaves; bonus and promo codes never "
        "issue before their campaign started)",
    )
    backfill.set_defaults(handler=_backfill)

    validate = sub.add_parser("validate", help="check segment definitions; every error with file, line and field")
    validate.add_argument(
        "paths", nargs="*", metavar="PATH", help="files or folders (default: the segment and export folders)"
    )
    validate.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    validate.set_defaults(handler=_validate)

    explain = sub.add_parser("explain", help="print a segment's SQL")
    explain.add_argument("key")
    explain.add_argument(
        "--as-of", metavar="YYYY-MM-DD", help="date for relative dates and windows (default yesterday)"
    )
    explain.add_argument(
        "--dialect", default="duckdb", help="duckdb, postgres or spark (the engines its SQL is tested on)"
    )
    explain.set_defaults(handler=_explain)

    preview = sub.add_parser("preview", help="evaluate a segment now, saving nothing: count, arms, sample rows")
    preview.add_argument("key")
    preview.add_argument("--as-of", required=True, metavar="YYYY-MM-DD")
    preview.add_argument("--sample", type=int, default=10)
    preview.set_defaults(handler=_preview)

    members = sub.add_parser("members", help="a segment's recorded members on a date")
    members.add_argument("key")
    members.add_argument("--as-of", required=True, metavar="YYYY-MM-DD")
    members.add_argument("--format", choices=["csv", "parquet"], default="csv")
    members.add_argument("--output", "-o", metavar="FILE")
    members.set_defaults(handler=_members)

    segments_of = sub.add_parser("segments-of", help="the segments a customer was in on a date")
    segments_of.add_argument("customer_id")
    segments_of.add_argument("--as-of", required=True, metavar="YYYY-MM-DD")
    segments_of.set_defaults(handler=_segments_of)

    report = sub.add_parser("report", help="one self-contained HTML page of a day's campaign results and segments")
    report.add_argument("--as-of", required=True)
    report.add_argument(
        "-o", "--output", help="the HTML file (default: reports/report-DATE.html beside the DuckDB file)"
    )
    report.set_defaults(handler=_report)

    exports = sub.add_parser("exports", help="export runs and deliveries")
    exports_sub = exports.add_subparsers(dest="exports_command", required=True)
    status = exports_sub.add_parser("status", help="the latest run of every export")
    status.add_argument("--fail-on-error", action="store_true", help="exit 1 when a latest run failed")
    status.set_defaults(handler=_exports_status)

    spark = sub.add_parser("spark", help="the Spark engine (docs/spark.md): features and segments on Spark")
    spark_sub = spark.add_subparsers(dest="spark_command", required=True)
    spark_run = spark_sub.add_parser(
        "run", help="publish the loaded raw tables, build the features on Spark and evaluate every segment there"
    )
    spark_run.add_argument("--as-of", required=True, help="YYYY-MM-DD")
    spark_run.add_argument("--compare", action="store_true", help="also evaluate on DuckDB and compare every segment")
    spark_run.set_defaults(handler=_spark_run)

    journeys = sub.add_parser("journeys", help="journeys: what a tick would do, where customers are")
    journeys_sub = journeys.add_subparsers(dest="journeys_command", required=True)
    plan = journeys_sub.add_parser("plan", help="what a tick would do, sending and writing nothing")
    plan.add_argument("keys", nargs="*", metavar="JOURNEY", help="journeys (default: all)")
    plan.add_argument("--as-of", metavar="YYYY-MM-DD", help="the tick at the end of this day (the nightly one)")
    plan.add_argument("--at", metavar="'YYYY-MM-DD HH:MM'", help="a tick at this moment (UTC) instead")
    plan.add_argument("--limit", type=int, default=20, help="sends listed per journey (default 20)")
    plan.set_defaults(handler=_journeys_plan)
    jstatus = journeys_sub.add_parser("status", help="per journey and step: waiting, sent, converted, exited")
    jstatus.add_argument("keys", nargs="*", metavar="JOURNEY", help="journeys (default: all)")
    jstatus.set_defaults(handler=_journeys_status)
    for command in [parser, *sub.choices.values(), *exports_sub.choices.values(), *journeys_sub.choices.values()]:
        command.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS if command is not parser else False,
            help="show the tools' own output: dbt's log, Dagster's notices and run log, every segment",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_telemetry()
    args = build_parser().parse_args(argv)
    terminal.configure(verbose=args.verbose)
    try:
        settings = Settings.from_env()
        return args.handler(args, settings)
    except BrokenPipeError:  # `acrm members … | head`
        sys.stderr.close()
        return 0
    except Exception as err:  # one clear line on stderr, not a traceback, for expected failures
        import duckdb

        from acrm_pipelines.automation.runner import RunFailed
        from acrm_pipelines.features.spark_build import SparkBuildFailed
        from acrm_pipelines.ingest.loader import LoadError
        from acrm_pipelines.yaml_specs import DefinitionErrors

        if isinstance(err, DefinitionErrors):
            print(str(err), file=sys.stderr)
            print(f"acrm {args.command}: {len(err.errors)} error(s)", file=sys.stderr)
            return 1
        if isinstance(
            err, RunFailed | LoadError | SparkBuildFailed | ValueError | LookupError | FileNotFoundError | duckdb.Error
        ):
            print(f"acrm {args.command}: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
