"""The one entry point Dagster loads (`dagster dev`, `dg`, `acrm run`): the `defs/` folder, with the settings
of the ACRM_* environment (or those a caller gives). Loading reads the YAML and the dbt manifest; it sets no
environment variable and creates no file."""

from __future__ import annotations

from dagster import Definitions, load_from_defs_folder

from acrm_pipelines.settings import REPO_ROOT, Settings
from acrm_pipelines.wiring.load import loading


def build_definitions(settings: Settings) -> Definitions:
    if settings.engine != "duckdb":
        # Not silently DuckDB: the nightly graph does not run on Spark yet (docs/spark.md says what does).
        raise ValueError(
            f"ACRM_ENGINE={settings.engine}: the Dagster pipeline (acrm run, acrm backfill, the UI and its "
            "schedules) runs on DuckDB only for now; `acrm spark run --as-of DATE` builds the features and "
            "evaluates the segments on Spark (docs/spark.md)"
        )
    # Invalid segment or export files stop loading here, with every error's file, line and field.
    with loading(settings):
        return load_from_defs_folder(project_root=REPO_ROOT)


defs = build_definitions(Settings.from_env())
