"""The one entry point Dagster loads (`dagster dev`, `dg`, `acrm run`): the `defs/` folder, with the settings
of the ACRM_* environment (or those a caller gives). Loading reads the YAML and the dbt manifest; it sets no
environment variable and creates no file."""

from __future__ import annotations

from dagster import Definitions, load_from_defs_folder

from acrm_pipelines.settings import REPO_ROOT, Settings
from acrm_pipelines.wiring.load import loading


def build_definitions(settings: Settings) -> Definitions:
    # Invalid segment or export files stop loading here, with every error's file, line and field.
    with loading(settings):
        return load_from_defs_folder(project_root=REPO_ROOT)


defs = build_definitions(Settings.from_env())
