"""What starts runs: the daily job and its nightly schedule, the refresh jobs, the sensors."""

import dagster as dg

from acrm_pipelines.automation.jobs import build_nightly_schedule, build_refresh, daily_job
from acrm_pipelines.automation.runs import acrm_dead_runs
from acrm_pipelines.automation.sensors import build_landing_sensor
from acrm_pipelines.components.specs import specs
from acrm_pipelines.wiring.load import current


@dg.definitions
def automation() -> dg.Definitions:
    settings = current().settings
    found = specs()
    refresh_jobs, refresh_schedules = build_refresh(found.segments, found.keyed)
    return dg.Definitions(
        jobs=[daily_job, *refresh_jobs],
        schedules=[build_nightly_schedule(settings), *refresh_schedules],
        sensors=[build_landing_sensor(settings), acrm_dead_runs],
    )
