"""The example journeys (journeys/demo.yaml) on the demo data through Dagster: the daily job ticks each
journey's asset at the end of its day, the tick job (what the sensor starts) at a time during the next day.

References: who entered the welcome series is the segment history's own reader of who entered
`new_this_month`; who entered the abandoned-cart journey is worked out in pandas from the loaded events;
when a welcome e-mail is due is worked out with zoneinfo from each customer's time zone.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
import pyarrow.csv as pacsv
import pytest
from dagster import AssetKey, DagsterInstance, DefaultSensorStatus, build_sensor_context

from acrm_pipelines.components.journeys import SENSOR, TICK_JOB, TICK_TAG
from acrm_pipelines.definitions import build_definitions
from acrm_pipelines.segments.members import entered_at
from tests.cases.demo import DEMO_END

DAY1, DAY2 = DEMO_END - timedelta(days=1), DEMO_END
MIDDAY = datetime.combine(DAY2 + timedelta(days=1), time(12, 0))  # the sensor's tick during the next day


def cutoff(day) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0))


@pytest.fixture(scope="module")
def journeys_run(demo_landing, tmp_path_factory, make_settings, run_pipeline):
    settings = make_settings(tmp_path_factory.mktemp("journeys_demo"), demo_landing, with_exports=True)
    instance = DagsterInstance.ephemeral()
    summaries = [run_pipeline(settings, day.isoformat(), instance) for day in (DAY1, DAY2)]
    job = build_definitions(settings).get_job_def(TICK_JOB)
    result = job.execute_in_process(instance=instance, tags={TICK_TAG: MIDDAY.isoformat()})
    assert result.success
    return settings, instance, summaries


def query(settings, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_welcome_series_enters_the_segments_newcomers_and_sends_in_local_hours(journeys_run) -> None:
    settings, instance, summaries = journeys_run
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        newcomers = {c for c, _ in entered_at(con, "new_this_month", DAY2)}
        zones = dict(con.execute("SELECT customer_id, timezone FROM marts.customer_features").fetchall())
    assert newcomers  # the demo registers customers every day
    positions = query(
        settings, "SELECT customer_id, entered_at FROM journeys.positions WHERE journey = 'welcome_series'"
    )
    assert {c for c, _ in positions} == newcomers
    assert {at for _, at in positions} == {cutoff(DAY2)}  # day 1 is the segment's first: nobody enters on it
    expected = {}
    for customer in newcomers:
        zone = ZoneInfo(zones.get(customer) or "Europe/Moscow")
        local = cutoff(DAY2).replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
        if not time(9) <= local.time() < time(21):
            day = local.date() if local.time() < time(9) else local.date() + timedelta(days=1)
            local = datetime.combine(day, time(9), zone)
        due = local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
        if due <= MIDDAY:
            expected[customer] = due
    sends = query(
        settings,
        "SELECT customer_id, due_at, status, send_key FROM journeys.sends WHERE export_key = 'welcome_email_1'",
    )
    assert {c: due for c, due, *_ in sends} == expected
    assert len(sends) == len(expected)
    # Delivered ones are in the outbox, once each; the tick job's observation says how many were delivered.
    folder = settings.outbox_dir / "journeys" / "welcome_series" / "welcome_email_1"
    in_files = [r["send_key"] for p in sorted(folder.glob("*.csv")) for r in pacsv.read_csv(p).to_pylist()]
    assert sorted(in_files) == sorted(k for *_, status, k in sends if status == "delivered")
    night = instance.get_latest_materialization_event(AssetKey(["journeys", "welcome_series"]))
    meta = night.asset_materialization.metadata
    assert meta["entered"].value == len(newcomers)
    assert "| step | waiting | sent |" in meta["steps"].value
    # `acrm run` prints the night's ticks: the welcome series' entries, in a journeys table
    lines = summaries[1].lines()
    (row,) = [line.split() for line in lines if line.startswith("welcome_series ")]
    assert row[1] == str(len(newcomers)) and any(line.split()[:2] == ["journey", "entered"] for line in lines)


def test_abandoned_cart_entries_equal_pandas(journeys_run) -> None:
    settings, _, _ = journeys_run
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        events = con.execute("SELECT customer_id, occurred_at FROM raw.events WHERE event_type = 'cart_abandon'").df()
    expected: dict[str, datetime] = {}
    for day in (DAY1, DAY2):  # each tick looks one day back; re-entry after 7 days
        window = events[(events.occurred_at > cutoff(day) - timedelta(days=1)) & (events.occurred_at <= cutoff(day))]
        for customer, first in window.groupby("customer_id").occurred_at.min().items():
            expected.setdefault(customer, first.to_pydatetime())
    got = query(settings, "SELECT customer_id, entered_at FROM journeys.positions WHERE journey = 'abandoned_cart'")
    assert dict(got) == expected
    assert len(got) == len(expected)


def test_a_past_partition_ticks_nothing(journeys_run, run_pipeline) -> None:
    settings, instance, summaries = journeys_run
    before = query(settings, "SELECT count(*) FROM journeys.log")
    run_pipeline(settings, DAY1.isoformat(), instance)
    assert query(settings, "SELECT count(*) FROM journeys.log") == before
    event = instance.get_latest_materialization_event(AssetKey(["journeys", "abandoned_cart"]))
    assert event.asset_materialization.metadata["skipped"].value == f"already ticked up to {MIDDAY}"
    assert pd.notna(before[0][0])


def test_the_sensor_asks_for_a_tick_every_n_minutes_and_starts_stopped(demo_landing, tmp_path, make_settings) -> None:
    settings = dataclasses.replace(make_settings(tmp_path, demo_landing, with_exports=True), journey_tick_minutes=5)
    sensor = build_definitions(settings).resolve_sensor_def(SENSOR)
    assert sensor.default_status == DefaultSensorStatus.STOPPED  # its runs send: switched on deliberately
    assert sensor.minimum_interval_seconds == 5 * 60
    before = datetime.now(UTC).replace(tzinfo=None)
    (request,) = sensor.evaluate_tick(build_sensor_context()).run_requests
    at = datetime.fromisoformat(request.tags[TICK_TAG])
    # on the 5-minute grid, at most 5 minutes before now; the run key repeats for a repeated evaluation
    assert (at.minute % 5, at.second, at.microsecond) == (0, 0, 0)
    assert before - timedelta(minutes=5) < at <= datetime.now(UTC).replace(tzinfo=None)
    assert request.run_key == f"journeys-{at.isoformat()}" and request.job_name in (None, TICK_JOB)
