"""Benchmark: what Dagster itself costs to record N segments per partition, for candidate asset designs.

    .venv/bin/python bench/dagster_bookkeeping.py [--segments 50 1000 5000] [--designs per_key grouped ...]

The asset bodies do no work (the segment engine is measured by bench/segments.py): each run only yields
the events a design needs, through `execute_in_process` on a real file-based instance (the repo's
dagster.yaml, SQLite storage) in a temporary DAGSTER_HOME, as `acrm run` does. Two partitions are run
per design and size; the table reports the second (the nightly case) in seconds and per 1,000 segments.

Designs:
- per_key: one multi-asset with one asset key per segment, a MaterializeResult with 6 metadata entries
  each (the design of the segment assets before components/segments.py).
- grouped: one asset per definition file (GROUPS of them); its materialization carries every segment's
  size/entered/exited as numeric metadata (`<key>.size`, plotted over time by the UI) and a table.
- grouped_consumed: grouped, plus a per-segment asset key for the CONSUMED segments an export reads (their
  own materialization, for lineage to the exports).
"""

# No `from __future__ import annotations`: Dagster reads annotations at definition time.

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dagster import (
    AssetSpec,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    define_asset_job,
    in_process_executor,
    multi_asset,
)

ROOT = Path(__file__).resolve().parent.parent
GROUPS = 10
CONSUMED = 20
PARTITIONS = DailyPartitionsDefinition(start_date="2024-01-01")
SCHEMA = TableSchema(
    columns=[TableColumn(name, kind) for name, kind in [("segment", "string"), ("size", "int"), ("entered", "int")]]
    + [TableColumn("exited", "int")]
)


def per_key(n: int) -> list:
    specs = [AssetSpec(["segments", f"s{i:05d}"], skippable=True) for i in range(n)]

    @multi_asset(specs=specs, can_subset=True, partitions_def=PARTITIONS, name="segments")
    def segments(context):
        for i, spec in enumerate(specs):
            yield MaterializeResult(
                asset_key=spec.key,
                metadata={
                    "size": MetadataValue.int(1000 + i),
                    "entered": MetadataValue.int(i % 7),
                    "exited": MetadataValue.int(i % 5),
                    "version": "v1",
                    "type": "dynamic",
                    "evaluated_with": MetadataValue.int(n),
                },
            )

    return [segments]


def grouped(n: int, consumed: int = 0) -> list:
    groups = [list(range(g, n, GROUPS)) for g in range(GROUPS)]
    specs = [AssetSpec(["segment_groups", f"g{g:02d}"]) for g in range(GROUPS)]
    specs += [AssetSpec(["segments", f"s{i:05d}"], skippable=True) for i in range(min(consumed, n))]

    @multi_asset(specs=specs, can_subset=True, partitions_def=PARTITIONS, name="segments")
    def segments(context):
        for g, members in enumerate(groups):
            metadata: dict = {"segments": MetadataValue.int(len(members))}
            rows = []
            for i in members:
                size, entered, exited = 1000 + i, i % 7, i % 5
                metadata[f"s{i:05d}.size"] = MetadataValue.int(size)
                rows.append(TableRecord({"segment": f"s{i:05d}", "size": size, "entered": entered, "exited": exited}))
            metadata["sizes"] = MetadataValue.table(rows, schema=SCHEMA)
            yield MaterializeResult(asset_key=["segment_groups", f"g{g:02d}"], metadata=metadata)
        for i in range(min(consumed, n)):
            yield MaterializeResult(asset_key=["segments", f"s{i:05d}"], metadata={"size": MetadataValue.int(1000 + i)})

    return [segments]


DESIGNS = {"per_key": per_key, "grouped": grouped, "grouped_consumed": lambda n: grouped(n, CONSUMED)}


def measure(design: str, n: int) -> float:
    home = Path(tempfile.mkdtemp(prefix="acrm-bookkeeping-"))
    try:
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        defs = Definitions(
            assets=DESIGNS[design](n),
            jobs=[define_asset_job("job", executor_def=in_process_executor)],
        )
        job = defs.resolve_job_def("job")
        instance = DagsterInstance.from_config(str(home))
        seconds = []
        for day in ("2024-01-01", "2024-01-02"):
            started = time.perf_counter()
            result = job.execute_in_process(
                partition_key=day,
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},  # as `acrm run`
            )
            assert result.success
            seconds.append(time.perf_counter() - started)
        return seconds[-1]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, nargs="+", default=[50, 1000, 5000])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--max-per-key", type=int, default=1000, help="skip per_key above this (it is slow)")
    args = parser.parse_args()
    print(f"{'design':<18}{'segments':>10}{'run_s':>10}{'s_per_1000':>12}")
    for design in args.designs:
        for n in args.segments:
            if design == "per_key" and n > args.max_per_key:
                continue
            s = measure(design, n)
            print(f"{design:<18}{n:>10}{s:>10.2f}{s / n * 1000:>12.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
