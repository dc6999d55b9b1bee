"""The resources every run uses: the DuckDB file and dbt."""

import dagster as dg

from acrm_pipelines.features.dbt import DbtCli, dbt_executable
from acrm_pipelines.settings import DBT_PROJECT_DIR
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.resources import DuckDBFile


@dg.definitions
def resources() -> dg.Definitions:
    settings = current().settings
    duckdb = DuckDBFile(database=str(settings.duckdb_path), connection_config=settings.duckdb_config())
    dbt = DbtCli(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable())
    return dg.Definitions(resources={"duckdb": duckdb, "dbt": dbt})
