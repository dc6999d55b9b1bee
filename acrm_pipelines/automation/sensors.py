"""The landing sensor: run the daily job as soon as new table files land, not only at 02:00.

The cursor is a JSON record of every table file already seen (relative path -> size and mtime), so a
file triggers at most once; a file still being written (modified within ``settle_seconds``) waits for
a later tick. The run key is a hash of the new files' signatures, so even a lost cursor cannot make
Dagster launch the same run twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from acrm_pipelines.automation.jobs import daily_job
from acrm_pipelines.ingest.contract import TABLES_BY_NAME
from acrm_pipelines.ingest.loader import SUFFIXES
from acrm_pipelines.settings import Settings
from acrm_pipelines.wiring.partitions import last_complete_day

if TYPE_CHECKING:  # not exported by `dagster`; what `define_asset_job` returns
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

SENSOR_NAME = "acrm_landing_files"
NEW_FILES_TAG = "acrm/new_files"
TABLES_TAG = "acrm/new_tables"
CURSOR_VERSION = 1
# Written by the demo generator next to the tables; never a table.
IGNORED_NAMES = frozenset({"_demo_summary.json"})


@dataclass(frozen=True)
class FileSignature:
    """What identifies one version of a landing file: a change in size or mtime makes it new again."""

    path: str  # relative to the landing folder, POSIX separators
    size: int
    mtime_ns: int

    def as_cursor(self) -> dict[str, int]:
        return {"size": self.size, "mtime_ns": self.mtime_ns}

    def token(self) -> str:
        return f"{self.path}\0{self.size}\0{self.mtime_ns}"


def _is_table_file(path: Path, top_level: bool) -> bool:
    """The files `discover_files` would load: `<table>.csv|.parquet`, or any CSV/Parquet in `<table>/`."""
    if path.name.startswith(".") or path.name in IGNORED_NAMES or not path.is_file():
        return False
    if top_level:
        return any(path.name == f"{table}{suffix}" for table in TABLES_BY_NAME for suffix in SUFFIXES)
    return path.suffix.lower() in SUFFIXES


def scan_landing(landing_dir: Path) -> list[FileSignature]:
    """Every table file in the landing folder with its size and mtime, sorted by relative path."""
    if not landing_dir.is_dir():
        return []
    found: list[Path] = [p for p in landing_dir.iterdir() if _is_table_file(p, top_level=True)]
    for table in TABLES_BY_NAME:
        folder = landing_dir / table
        if folder.is_dir():
            found += [p for p in folder.iterdir() if _is_table_file(p, top_level=False)]
    signatures = []
    for p in found:
        try:
            st = p.stat()
        except FileNotFoundError:  # removed between listing and stat: it is simply not there
            continue
        signatures.append(FileSignature(p.relative_to(landing_dir).as_posix(), st.st_size, st.st_mtime_ns))
    return sorted(signatures, key=lambda s: s.path)


def load_cursor(cursor: str | None) -> dict[str, dict[str, int]]:
    """The files seen so far; an empty or unreadable cursor means none (run keys still dedupe)."""
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
        files = data["files"] if isinstance(data, dict) and data.get("version") == CURSOR_VERSION else None
    except (ValueError, KeyError):
        files = None
    if not isinstance(files, dict):
        return {}
    return {
        path: {"size": int(entry["size"]), "mtime_ns": int(entry["mtime_ns"])}
        for path, entry in files.items()
        if isinstance(entry, dict) and "size" in entry and "mtime_ns" in entry
    }


def dump_cursor(files: dict[str, dict[str, int]]) -> str:
    """Sorted keys so that an unchanged folder gives a byte-identical cursor."""
    return json.dumps({"version": CURSOR_VERSION, "files": files}, sort_keys=True, separators=(",", ":"))


def run_key_for(new_files: list[FileSignature]) -> str:
    """Stable for the same set of file versions, whatever the order they were found in."""
    digest = hashlib.sha256("\n".join(sorted(s.token() for s in new_files)).encode()).hexdigest()
    return f"landing-{digest[:32]}"


def build_landing_sensor(
    settings: Settings,
    job: JobDefinition | UnresolvedAssetJobDefinition = daily_job,
    minimum_interval_seconds: int = 60,
    settle_seconds: float = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
) -> SensorDefinition:
    """A sensor that requests one run of the daily job, for the latest complete day, per batch of new files."""
    landing_dir = settings.landing_dir

    @sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Runs the daily job for yesterday's partition when new or changed table files land in the "
            f"landing folder (files modified in the last {settle_seconds:g} s wait for a later tick)."
        ),
    )
    def acrm_landing_files(context: SensorEvaluationContext) -> SensorResult:
        seen = load_cursor(context.cursor)
        now_ns = time.time_ns()
        settle_ns = int(settle_seconds * 1_000_000_000)

        current: dict[str, dict[str, int]] = {}
        new_files: list[FileSignature] = []
        unsettled: list[str] = []
        for sig in scan_landing(landing_dir):
            if now_ns - sig.mtime_ns < settle_ns:
                # Still being written: remember the last settled version (if any) and look again later.
                unsettled.append(sig.path)
                if sig.path in seen:
                    current[sig.path] = seen[sig.path]
                continue
            current[sig.path] = sig.as_cursor()
            if seen.get(sig.path) != current[sig.path]:
                new_files.append(sig)
        # Files no longer in the folder drop out, so the cursor stays the size of the folder.
        new_cursor = dump_cursor(current)

        waiting = f"; {len(unsettled)} file(s) still being written" if unsettled else ""
        if not new_files:
            return SensorResult(skip_reason=SkipReason(f"No new landing files{waiting}."), cursor=new_cursor)

        day = last_complete_day(settings)
        if day is None:
            # Keep the old cursor: the files count as new once the first day is complete.
            return SensorResult(
                skip_reason=SkipReason(
                    f"{len(new_files)} new landing file(s), but no complete daily partition yet "
                    f"(start date {settings.start_date.isoformat()})."
                ),
                cursor=context.cursor,
            )

        partition_key = day.isoformat()
        # File names only: the contents (personal data) never go near the logs.
        context.log.info(
            f"{len(new_files)} new landing file(s) for partition {partition_key}: "
            + ", ".join(s.path for s in new_files)
            + waiting
        )
        tables = sorted({s.path.split("/", 1)[0].split(".", 1)[0] for s in new_files})
        request = RunRequest(
            run_key=run_key_for(new_files),
            partition_key=partition_key,
            tags={NEW_FILES_TAG: str(len(new_files)), TABLES_TAG: ",".join(tables)},
        )
        return SensorResult(run_requests=[request], cursor=new_cursor)

    return acrm_landing_files
