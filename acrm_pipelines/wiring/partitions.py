"""Daily partitions: a partition key is the as-of date of a run (YYYY-MM-DD)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dagster import BackfillPolicy, DailyPartitionsDefinition

from acrm_pipelines.settings import Settings

# Every asset that writes the DuckDB file runs in this concurrency pool (limit 1 in dagster.yaml).
DUCKDB_POOL = "duckdb"

# A backfill runs one partition per run, for every asset: the marts hold one as-of date at a time, so a
# run over a range could not give each day its own features. (dagster-dbt would default to one run for
# the whole range.) The cheap part of a range, loading the landing folder once, comes from the raw
# load keeping an unchanged load (ingest/loader.py).
ONE_PARTITION_PER_RUN = BackfillPolicy.multi_run(1)


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    """One partition per day from ACRM_START_DATE up to today.

    Today's partition exists for the every-N-hours refresh of marked segments (its windows end with
    the day, so they hold whatever has landed so far); the nightly run computes yesterday, the last
    complete day, and so overwrites the refreshes of that day with its final membership.
    """
    return DailyPartitionsDefinition(start_date=settings.start_date.isoformat(), end_offset=1)


def last_complete_day(settings: Settings, now: datetime | None = None) -> date | None:
    """Yesterday (UTC, like the partitions), or None before the first partition has ended."""
    day = (now or datetime.now(UTC)).astimezone(UTC).date() - timedelta(days=1)
    return day if day >= settings.start_date else None
