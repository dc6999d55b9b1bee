"""The journey YAML folder (ACRM_JOURNEYS_DIR, docs/journeys.md) as Dagster assets, a job and a sensor.

- An asset per journey (`journeys/<key>`), downstream of the segments it reads, ticked at the end of its
  partition's day by the daily job: the night's entries and every step due by then. Its metadata counts
  what the tick did and where each step's customers are.
- `acrm_journeys_tick`, a job that ticks every journey at the time in its `acrm/tick_at` tag, started by
  the sensor `acrm_journeys` every ACRM_JOURNEY_TICK_MINUTES (stopped until switched on, like the nightly
  schedule): an abandoned cart's reminder goes within that interval, not the next night.

A tick never goes back in time: one at or before the journey's last tick (a backfill of past days, a
re-executed run) does nothing, and a backfill ticks only with the send tag, as exports send.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import dagster as dg
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue
from dagster_duckdb import DuckDBResource

from acrm_pipelines.analytics.attribution import attribution_vars
from acrm_pipelines.components.segments import segment_key
from acrm_pipelines.components.specs import specs
from acrm_pipelines.exports.run import BACKFILL_TAGS, SEND_TAG
from acrm_pipelines.journeys import run, state, status
from acrm_pipelines.journeys.facts import cutoff
from acrm_pipelines.journeys.spec import Journey
from acrm_pipelines.journeys.validate import JourneySet
from acrm_pipelines.settings import Settings
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.partitions import DUCKDB_POOL, ONE_PARTITION_PER_RUN, daily_partitions

GROUP = "journeys"
# Every journey reads the loaded events and orders (through the staging views), the features (time zones,
# the exports' fields) and the segments it names: it runs after all of them.
FEATURES = AssetKey("customer_features")
TICK_JOB = "acrm_journeys_tick"
SENSOR = "acrm_journeys"
TICK_TAG = "acrm/tick_at"


def journey_key(key: str) -> AssetKey:
    return AssetKey(["journeys", key])


def reads(journey: Journey) -> list[str]:
    """The segments a journey reads: its entry's, its exits' and its branches'."""
    found = [*journey.on.segments, *(e.segment for e in journey.exit_when if e.segment)]
    return list(dict.fromkeys([*found, *status.branch_segments(journey)]))


def _metadata(ticked: run.Ticked, con, settings: Settings) -> dict:
    plan = ticked.plan
    meta: dict = {"tick_at": plan.now.isoformat(sep=" ")}
    if plan.skipped:
        meta["skipped"] = plan.skipped
    meta |= {what: MetadataValue.int(n) for what, n in sorted(ticked.counts().items())}
    meta["delivered"] = MetadataValue.int(sum(ticked.delivered.values()))
    windows = attribution_vars(specs().exports, settings.attribution_window)
    meta["steps"] = MetadataValue.md(status.markdown(status.by_step(con, ticked.key, windows)))
    return meta


def build_journey_asset(journey: Journey, file: str, settings: Settings, partitions_def):
    @dg.asset(
        name=journey.key,
        key_prefix=["journeys"],
        deps=[FEATURES, *(segment_key(k) for k in reads(journey))],
        partitions_def=partitions_def,
        backfill_policy=ONE_PARTITION_PER_RUN,
        group_name=GROUP,
        pool=DUCKDB_POOL,
        kinds={"duckdb"},
        description=journey.title or f"journey {journey.key}",
        metadata={"definition_file": file, "version": journey.version},
    )
    def _journey(context: AssetExecutionContext, duckdb: DuckDBResource) -> MaterializeResult:
        now = cutoff(date.fromisoformat(context.partition_key))
        tags = dict(context.run.tags)
        if any(tag in tags for tag in BACKFILL_TAGS) and tags.get(SEND_TAG) != "true":
            reason = f"not ticked: a backfill sends nothing unless asked (the run tag {SEND_TAG}=true)"
            context.log.info(f"{journey.key}: {reason}")
            return MaterializeResult(metadata={"skipped": reason})
        found = specs()
        with duckdb.get_connection() as con:
            (ticked,) = run.tick(con, found.journeys, found.exports, now, settings.outbox_dir, [journey.key])
            return MaterializeResult(metadata=_metadata(ticked, con, settings))

    return _journey


def build_tick_job(journeys: JourneySet, settings: Settings) -> dg.JobDefinition:
    @dg.op(name="tick_journeys", pool=DUCKDB_POOL)
    def tick_journeys(context: dg.OpExecutionContext, duckdb: DuckDBResource) -> None:
        now = datetime.fromisoformat(context.run.tags[TICK_TAG])
        found = specs()
        with duckdb.get_connection() as con:
            for ticked in run.tick(con, found.journeys, found.exports, now, settings.outbox_dir):
                meta = _metadata(ticked, con, settings)
                context.log_event(dg.AssetObservation(asset_key=journey_key(ticked.key), metadata=meta))

    @dg.job(name=TICK_JOB, description="Tick every journey at the time in the run's acrm/tick_at tag.")
    def _job() -> None:
        tick_journeys()

    return _job


def build_sensor(settings: Settings, job: dg.JobDefinition) -> dg.SensorDefinition:
    minutes = settings.journey_tick_minutes

    @dg.sensor(
        name=SENSOR,
        job=job,
        minimum_interval_seconds=minutes * 60,
        # Stopped until switched on (docs/operations.md): its runs send to the outside world.
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Every {minutes} minutes: tick the journeys (event entries, sends due) between nights.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest:
        # The tick time, on the interval's grid: the run key makes a lost or repeated evaluation harmless.
        now = state.utc_now()
        at = now - timedelta(minutes=now.minute % minutes, seconds=now.second, microseconds=now.microsecond)
        return dg.RunRequest(run_key=f"journeys-{at.isoformat()}", tags={TICK_TAG: at.isoformat()})

    return _sensor


@dataclass
class JourneysComponent(dg.Component, dg.Resolvable):
    """Every journey of ACRM_JOURNEYS_DIR: an asset each, the tick job and its sensor."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        settings = current().settings
        found = specs()
        if not len(found.journeys):
            return dg.Definitions()
        partitions = daily_partitions(settings)
        assets = [
            build_journey_asset(found.journeys[k], found.journeys.docs[k].file, settings, partitions)
            for k in found.journeys.keys  # inactive ones too: their customers in flight go on
        ]
        job = build_tick_job(found.journeys, settings)
        return dg.Definitions(assets=assets, jobs=[job], sensors=[build_sensor(settings, job)])
