"""The daily job (the whole graph for one as-of date), its nightly schedule, and the intraday refreshes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    schedule,
)

from acrm_pipelines.components.segments import segment_key
from acrm_pipelines.segments.validate import SegmentSet
from acrm_pipelines.settings import Settings

DAILY_JOB = "acrm_daily"
NIGHTLY_SCHEDULE = "acrm_nightly"
REFRESH_TAG = "acrm/refresh"

# One step after another in one process: the DuckDB file takes one writer, and a step costs ~50 ms
# in-process against ~1 s with the multiprocess executor.
daily_job = define_asset_job(
    DAILY_JOB,
    selection=AssetSelection.all(),
    executor_def=in_process_executor,
    description="Load the landing folder, build features as of the partition date, then everything downstream.",
)


def _scheduled(context: ScheduleEvaluationContext) -> datetime:
    return (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC)


def build_nightly_schedule(settings: Settings) -> ScheduleDefinition:
    @schedule(
        name=NIGHTLY_SCHEDULE,
        cron_schedule="0 2 * * *",
        job=daily_job,
        execution_timezone="UTC",
        # Stopped until switched on (docs/operations.md): every tick sends the exports to the outside world.
        default_status=DefaultScheduleStatus.STOPPED,
        description="Every night at 02:00 UTC: the whole graph for yesterday's partition (the last complete day). "
        "Stopped until switched on: `dagster schedule start acrm_nightly -w workspace.yaml` or the UI's toggle.",
    )
    def acrm_nightly(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        day = _scheduled(context).date() - timedelta(days=1)
        if day < settings.start_date:
            return SkipReason(f"{day} is before ACRM_START_DATE ({settings.start_date})")
        return RunRequest(run_key=f"nightly-{day}", partition_key=day.isoformat())

    return acrm_nightly


def refresh_job_name(hours: int) -> str:
    return f"acrm_refresh_{hours}h"


def build_refresh(segments: SegmentSet, keyed: Sequence[str]) -> tuple[list, list[ScheduleDefinition]]:
    """Per `refresh: Nh` in the segment YAML: a job for the marked segments and their exports, and a
    schedule running it every N hours for today's partition (stopped until switched on in the UI).
    `keyed` are the segments with an asset key of their own (marked ones among them)."""
    by_hours: dict[int, list[str]] = {}
    for key in segments.order:
        hours = segments[key].refresh_hours
        if hours is not None:
            by_hours.setdefault(hours, []).append(key)
    jobs, schedules = [], []
    for hours, keys in sorted(by_hours.items()):
        marked = AssetSelection.assets(*[segment_key(k) for k in keys])
        unmarked = AssetSelection.assets(*[segment_key(k) for k in keyed if k not in keys])
        # What the marked segments read (load, features, the segments they are built from), themselves,
        # and their exports; not the other segments built on them.
        selection = marked.upstream() | (marked.downstream(depth=1) - unmarked)
        job = define_asset_job(
            refresh_job_name(hours),
            selection=selection,
            executor_def=in_process_executor,
            tags={REFRESH_TAG: f"{hours}h"},
            description=f"Today's partition for the segments marked `refresh: {hours}h`: {', '.join(keys)}.",
        )
        jobs.append(job)
        schedules.append(_refresh_schedule(job, hours))
    return jobs, schedules


def _refresh_schedule(job, hours: int) -> ScheduleDefinition:
    @schedule(
        name=f"acrm_refresh_every_{hours}h",
        cron_schedule=f"0 */{hours} * * *",
        job=job,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Every {hours} hours: today's partition of the segments marked `refresh: {hours}h`.",
    )
    def refresh(context: ScheduleEvaluationContext) -> RunRequest:
        at = _scheduled(context)
        return RunRequest(run_key=f"refresh-{hours}h-{at.isoformat()}", partition_key=at.date().isoformat())

    return refresh
