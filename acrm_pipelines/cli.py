"""The `acrm` command (the contract in docs/settings-and-cli.md). Errors go to stderr with exit code 1."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

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

    summary = run_partition(defs, settings, args.as_of)
    print("\n".join(summary.lines()))
    print(f"\nDuckDB file: {settings.duckdb_path}  (marts.customer_features, raw.quarantine)")
    print("Dagster UI:  make ui  →  http://127.0.0.1:3000")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_telemetry()
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.handler(args, settings)
    except Exception as err:  # one clear line on stderr, not a traceback, for expected failures
        from acrm_pipelines.automation.runner import RunFailed
        from acrm_pipelines.ingest.loader import LoadError

        if isinstance(err, RunFailed | LoadError | ValueError | FileNotFoundError):
            print(f"acrm {args.command}: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
