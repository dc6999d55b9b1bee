"""Dagster wiring every domain's assets share: the daily partitions, the DuckDB pool, the DuckDB resource, and
the event log storage the repo's dagster.yaml names."""
