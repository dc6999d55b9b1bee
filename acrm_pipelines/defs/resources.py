"""The resources every run uses: the DuckDB file and dbt."""

import dagster as dg

from acrm_pipelines.features.dbt import dbt_resource
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.resources import DuckDBFile


@dg.definitions
def resources() -> dg.Definitions:
    settings = current().settings
    duckdb = DuckDBFile(database=str(settings.duckdb_path), connection_config=settings.duckdb_config())
    return dg.Definitions(resources={"duckdb": duckdb, "dbt": dbt_resource()})
