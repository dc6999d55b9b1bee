"""Dagster wiring every domain's assets share: the daily partitions, the DuckDB pool, the DuckDB resource."""
