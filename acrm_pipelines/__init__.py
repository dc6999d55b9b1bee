"""ACRM pipelines: analytical-CRM segmentation as code on Dagster, dbt and DuckDB."""
