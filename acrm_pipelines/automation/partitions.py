"""Daily partitions: a partition key is the as-of date of a run (YYYY-MM-DD)."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition

from acrm_pipelines.settings import Settings

# Every asset that writes the DuckDB file runs in this concurrency pool (limit 1 in dagster.yaml).
DUCKDB_POOL = "duckdb"


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    """One partition per day from ACRM_START_DATE up to yesterday (a day is complete when it ends)."""
    return DailyPartitionsDefinition(start_date=settings.start_date.isoformat())
