"""Shared fixtures: real DuckDB files, real dbt runs and real Dagster materializations in tmp folders."""

from __future__ import annotations

import dataclasses
import os
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance

from acrm_pipelines.settings import Settings, quiet_telemetry

quiet_telemetry()
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# The demo data's history ends here; tests cut features at dates inside it.
DEMO_END = date(2026, 11, 20)
TEST_START = date(2019, 1, 1)


def make_settings(tmp: Path, landing: Path, db: Path | None = None, with_exports: bool = False) -> Settings:
    """The repo's segments; its example exports only when asked (they need those segments)."""
    base = Settings.from_env()
    return dataclasses.replace(
        base,
        landing_dir=landing,
        duckdb_path=db or tmp / "acrm.duckdb",
        outbox_dir=tmp / "outbox",
        exports_dir=base.exports_dir if with_exports else tmp / "no_exports",
        start_date=TEST_START,
    )


def run_pipeline(settings: Settings, as_of: str, instance: DagsterInstance | None = None):
    """The whole daily job for one partition, in-process, as `acrm run` does it."""
    from acrm_pipelines.automation.runner import run_partition
    from acrm_pipelines.definitions import build_definitions

    defs = build_definitions(settings)
    return run_partition(defs, settings, as_of, instance or DagsterInstance.ephemeral())


@pytest.fixture(scope="session")
def demo_landing(tmp_path_factory) -> Path:
    """A generated landing folder of a few thousand customers (CSV), shared by the session."""
    from acrm_pipelines.demo.generator import generate

    landing = tmp_path_factory.mktemp("demo") / "landing"
    generate(landing, customers=3000, seed=7, fmt="csv", end_date=DEMO_END)
    return landing
