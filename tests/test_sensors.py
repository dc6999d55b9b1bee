"""The landing sensor: one run per batch of new table files, for yesterday's partition, never twice."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    Definitions,
    SensorDefinition,
    SensorResult,
    asset,
    build_sensor_context,
)

from acrm_pipelines.automation.jobs import DAILY_JOB, daily_job
from acrm_pipelines.automation.sensors import NEW_FILES_TAG, TABLES_TAG, build_landing_sensor
from acrm_pipelines.settings import Settings
from acrm_pipelines.wiring.partitions import daily_partitions

START = date(2024, 1, 1)
AN_HOUR_AGO = time.time() - 3600


def yesterday() -> str:
    """The latest complete daily partition, computed apart from Dagster (partitions are in UTC)."""
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def put(path: Path, text: str = "customer_id\n1\n", mtime: float | None = AN_HOUR_AGO) -> Path:
    """A landing file, settled (an hour old) unless told otherwise; `mtime=None` leaves it just written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    landing = tmp_path / "landing"
    landing.mkdir()
    return dataclasses.replace(Settings.from_env(), landing_dir=landing, start_date=START)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def defs_for(settings: Settings, sensor_def: SensorDefinition) -> Definitions:
    """The daily job resolved over one asset with the pipeline's partitions, as the daemon sees it."""

    @asset(partitions_def=daily_partitions(settings))
    def probe() -> None: ...

    return Definitions(assets=[probe], jobs=[daily_job], sensors=[sensor_def])


class Ticker:
    """Evaluates the sensor tick after tick, carrying the cursor forward like the daemon does."""

    def __init__(self, settings: Settings, instance: DagsterInstance, **kwargs) -> None:
        self.sensor = build_landing_sensor(settings, **kwargs)
        self.defs = defs_for(settings, self.sensor)
        self.instance = instance
        self.cursor: str | None = None

    def tick(self, from_scratch: bool = False):
        """One evaluation; `from_scratch` drops the cursor (as if it were lost) for this tick."""
        cursor = None if from_scratch else self.cursor
        ctx = build_sensor_context(cursor=cursor, instance=self.instance, definitions=self.defs)
        data = self.sensor.evaluate_tick(ctx)
        if data.cursor is not None:
            self.cursor = data.cursor
        return data

    def seen(self) -> dict[str, dict[str, int]]:
        return json.loads(self.cursor or '{"files": {}}')["files"]


def test_sensor_definition_targets_the_daily_job(settings: Settings) -> None:
    sensor_def = build_landing_sensor(settings)
    assert sensor_def.name == "acrm_landing_files"
    assert sensor_def.job_name == DAILY_JOB
    assert sensor_def.minimum_interval_seconds == 60
    assert build_landing_sensor(settings, minimum_interval_seconds=300).minimum_interval_seconds == 300


def test_first_tick_requests_one_run_for_yesterday(settings: Settings, instance: DagsterInstance) -> None:
    customers = put(settings.landing_dir / "customers.csv")
    put(settings.landing_dir / "products.parquet", "not really parquet; the sensor never reads contents")
    ticker = Ticker(settings, instance)

    data = ticker.tick()
    assert data.skip_message is None
    assert len(data.run_requests) == 1
    request = data.run_requests[0]
    assert request.partition_key == yesterday()
    assert request.tags[NEW_FILES_TAG] == "2"
    assert request.tags[TABLES_TAG] == "customers,products"
    assert request.run_key.startswith("landing-")
    seen = ticker.seen()
    assert set(seen) == {"customers.csv", "products.parquet"}
    assert seen["customers.csv"] == {"size": customers.stat().st_size, "mtime_ns": customers.stat().st_mtime_ns}

    # The same files from scratch (a lost cursor): the same run key, so Dagster will not run it again.
    again = ticker.tick(from_scratch=True)
    assert [r.run_key for r in again.run_requests] == [request.run_key]


def test_unchanged_folder_is_skipped(settings: Settings, instance: DagsterInstance) -> None:
    put(settings.landing_dir / "customers.csv")
    put(settings.landing_dir / "orders.csv")
    ticker = Ticker(settings, instance)
    assert len(ticker.tick().run_requests) == 1
    cursor = ticker.cursor

    data = ticker.tick()
    assert data.run_requests == []
    assert data.skip_message == "No new landing files."
    assert ticker.cursor == cursor


def test_new_file_in_table_folder_triggers_once(settings: Settings, instance: DagsterInstance) -> None:
    put(settings.landing_dir / "customers.csv")
    put(settings.landing_dir / "orders" / "2024-06-01.csv")
    ticker = Ticker(settings, instance)
    first = ticker.tick().run_requests[0]

    put(settings.landing_dir / "orders" / "2024-06-02.parquet")
    data = ticker.tick()
    assert len(data.run_requests) == 1
    request = data.run_requests[0]
    assert request.run_key != first.run_key
    assert request.partition_key == yesterday()
    assert request.tags[NEW_FILES_TAG] == "1"
    assert request.tags[TABLES_TAG] == "orders"
    assert "orders/2024-06-02.parquet" in ticker.seen()

    assert ticker.tick().skip_message == "No new landing files."


def test_modified_file_triggers_again(settings: Settings, instance: DagsterInstance) -> None:
    customers = put(settings.landing_dir / "customers.csv")
    put(settings.landing_dir / "orders.csv")
    ticker = Ticker(settings, instance)
    first = ticker.tick().run_requests[0]

    # Size changes (mtime kept the same): new again.
    put(customers, "customer_id\n1\n2\n")
    sized = ticker.tick().run_requests
    assert len(sized) == 1
    assert sized[0].tags[NEW_FILES_TAG] == "1"
    assert sized[0].tags[TABLES_TAG] == "customers"
    assert sized[0].run_key != first.run_key
    assert ticker.tick().skip_message == "No new landing files."

    # Same size, another mtime (rewritten in place): new again, with yet another run key.
    os.utime(customers, (AN_HOUR_AGO + 60, AN_HOUR_AGO + 60))
    touched = ticker.tick().run_requests
    assert len(touched) == 1
    assert touched[0].run_key not in {first.run_key, sized[0].run_key}


def test_file_still_being_written_waits_until_settled(settings: Settings, instance: DagsterInstance) -> None:
    put(settings.landing_dir / "customers.csv")
    fresh = put(settings.landing_dir / "orders" / "part-1.csv", mtime=None)  # modified just now
    ticker = Ticker(settings, instance, settle_seconds=5)

    data = ticker.tick()
    assert len(data.run_requests) == 1
    assert data.run_requests[0].tags[NEW_FILES_TAG] == "1"  # only the settled customers.csv
    assert set(ticker.seen()) == {"customers.csv"}

    data = ticker.tick()
    assert data.run_requests == []
    assert data.skip_message == "No new landing files; 1 file(s) still being written."

    os.utime(fresh, (AN_HOUR_AGO, AN_HOUR_AGO))  # the writer finished a while ago
    data = ticker.tick()
    assert len(data.run_requests) == 1
    assert data.run_requests[0].tags[TABLES_TAG] == "orders"
    assert set(ticker.seen()) == {"customers.csv", "orders/part-1.csv"}


def test_seen_file_being_rewritten_keeps_its_old_version_until_settled(
    settings: Settings, instance: DagsterInstance
) -> None:
    customers = put(settings.landing_dir / "customers.csv")
    ticker = Ticker(settings, instance, settle_seconds=5)
    ticker.tick()
    old = ticker.seen()["customers.csv"]

    put(customers, "customer_id\n1\n2\n3\n", mtime=None)
    assert ticker.tick().run_requests == []
    assert ticker.seen()["customers.csv"] == old  # not forgotten, not yet replaced

    os.utime(customers, (AN_HOUR_AGO + 120, AN_HOUR_AGO + 120))
    assert len(ticker.tick().run_requests) == 1
    assert ticker.seen()["customers.csv"]["size"] == customers.stat().st_size


def test_hidden_and_unrelated_files_are_ignored(settings: Settings, instance: DagsterInstance) -> None:
    landing = settings.landing_dir
    put(landing / ".customers.csv")  # hidden
    put(landing / "orders" / ".part-1.csv.swp")  # an editor's swap file
    put(landing / "orders" / ".part-2.csv")  # hidden inside a table folder
    put(landing / "_demo_summary.json", "{}")
    put(landing / "notes.txt")
    put(landing / "customers.json")  # not CSV/Parquet
    put(landing / "leads.csv")  # not a contract table
    put(landing / "archive" / "customers.csv")  # not a table folder
    put(landing / "orders" / "README.md")
    ticker = Ticker(settings, instance)

    data = ticker.tick()
    assert data.run_requests == []
    assert data.skip_message == "No new landing files."
    assert ticker.seen() == {}

    put(landing / "orders" / "part-3.CSV")  # the loader takes suffixes in any case
    data = ticker.tick()
    assert len(data.run_requests) == 1
    assert data.run_requests[0].tags[NEW_FILES_TAG] == "1"
    assert set(ticker.seen()) == {"orders/part-3.CSV"}


def test_missing_landing_folder_is_skipped(tmp_path: Path, instance: DagsterInstance) -> None:
    settings = dataclasses.replace(Settings.from_env(), landing_dir=tmp_path / "absent", start_date=START)
    data = Ticker(settings, instance).tick()
    assert data.run_requests == []
    assert data.skip_message == "No new landing files."


def test_no_complete_partition_yet_keeps_files_for_later(settings: Settings, instance: DagsterInstance) -> None:
    put(settings.landing_dir / "customers.csv")
    today = dataclasses.replace(settings, start_date=datetime.now(UTC).date())
    ticker = Ticker(today, instance)
    data = ticker.tick()
    assert data.run_requests == []
    assert "no complete daily partition yet" in (data.skip_message or "")
    assert ticker.cursor is None  # the files still count as new once a day is complete


def test_direct_call_without_a_repository(settings: Settings, instance: DagsterInstance) -> None:
    """Called as a function (no Definitions), the partitions come from the settings' start date."""
    put(settings.landing_dir / "customers.csv")
    sensor_def = build_landing_sensor(settings)
    result = sensor_def(build_sensor_context(cursor=None, instance=instance))
    assert isinstance(result, SensorResult)
    assert [r.partition_key for r in result.run_requests] == [yesterday()]
    assert result.cursor is not None
    skipped = sensor_def(build_sensor_context(cursor=result.cursor, instance=instance))
    assert skipped.run_requests == [] and skipped.skip_reason.skip_message == "No new landing files."


def test_runs_against_the_real_definitions(settings: Settings, instance: DagsterInstance, tmp_path: Path) -> None:
    """The sensor as the project's definitions carry it: its partition is valid for the resolved job."""
    from acrm_pipelines.definitions import build_definitions

    settings = dataclasses.replace(
        settings,
        duckdb_path=tmp_path / "acrm.duckdb",
        outbox_dir=tmp_path / "outbox",
        exports_dir=tmp_path / "none",
        journeys_dir=tmp_path / "none",  # the repo's journeys send the repo's exports
    )
    put(settings.landing_dir / "customers.csv")
    defs = build_definitions(settings)
    sensor_def = defs.resolve_sensor_def("acrm_landing_files")
    data = sensor_def.evaluate_tick(build_sensor_context(cursor=None, instance=instance, definitions=defs))
    assert [r.partition_key for r in data.run_requests] == [yesterday()]
    assert data.run_requests[0].job_name in (None, DAILY_JOB)
