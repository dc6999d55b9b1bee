"""Runs of `acrm run` and `acrm backfill` are the job's runs in the Dagster UI, leave no partition of the job
missing, and the nightly schedule starts stopped.

The real `acrm` command runs as a subprocess against a temporary DAGSTER_HOME (the repo's dagster.yaml) on generated
landing data, with the repo's segments and exports plus two segments that have their own asset key: an inactive one
(never evaluated) and a static one. Then the webserver's GraphQL schema, over the workspace that `dagster dev -w
workspace.yaml` loads (its code server started from workspace.yaml), is asked what the UI shows: the job's runs (the
Runs tab, the Overview timeline and the duration charts find a job's runs by its `.dagster/repository` label), the
partition status of every asset of the job, and the schedule's state. Before, these runs had no repository origin
and the job's Runs tab was empty, and an inactive segment's asset left every partition of the job "Missing".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, RunsFilter
from dagster._core.storage.tags import PARTITION_NAME_TAG, REPOSITORY_LABEL_TAG
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from acrm_pipelines.automation.jobs import DAILY_JOB, NIGHTLY_SCHEDULE
from acrm_pipelines.exports.run import BACKFILL_TAGS, SEND_TAG
from tests.cases.demo import DEMO_END

REPO = Path(__file__).resolve().parent.parent
RUN_DAY = DEMO_END.isoformat()
BACKFILL_DAY = "2026-11-19"
REPOSITORY = "__repository__"  # the name Dagster gives the repository of a Definitions object
EXTRA_SEGMENTS = """\
key: paused_keyed
title: Inactive, with a size check (so an asset key of its own), never evaluated
active: false
size_alert: {max_ratio: 2}
rules: {field: orders_count, op: ">=", value: 1}
---
key: static_keyed
title: Static, with a size check
type: static
size_alert: {max_ratio: 2}
rules: {field: orders_count, op: ">=", value: 2}
"""
# An export of the inactive segment: it runs every partition (not left missing) and sends nothing.
PAUSED_EXPORT = """\
key: paused_file
segment: paused_keyed
channel: email
campaign: paused
destination: {type: csv}
"""

WORKSPACE = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
JOB_RUNS = """
query ($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline {
      runs { runId status tags { key value } repositoryOrigin { repositoryLocationName repositoryName } }
    }
  }
}"""
RUNS_OF_REPOSITORY = """
query ($filter: RunsFilter!) {
  runsOrError(filter: $filter) { ... on Runs { results { runId } } }
}"""
PARTITIONS = """
query ($selector: PipelineSelector!) {
  assetNodes(pipeline: $selector) {
    assetKey { path }
    assetPartitionStatuses {
      __typename
      ... on TimePartitionStatuses { ranges { status startKey endKey } }
    }
  }
}"""
SCHEDULE = """
query ($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { scheduleState { status } }
  }
}"""


def _cli(exe: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / exe), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def instance_env(tmp_path_factory) -> dict[str, str]:
    """`acrm run` for DEMO_END, then `acrm backfill` of the day before, on one DAGSTER_HOME."""
    from acrm_pipelines.demo.generator import generate

    tmp = tmp_path_factory.mktemp("runs_in_ui")
    generate(tmp / "landing", customers=500, seed=11, fmt="csv", end_date=DEMO_END)
    segments = tmp / "segments"
    shutil.copytree(REPO / "segments", segments)
    (segments / "keyed.yaml").write_text(EXTRA_SEGMENTS)
    exports = tmp / "exports"
    shutil.copytree(REPO / "exports", exports)
    (exports / "paused.yaml").write_text(PAUSED_EXPORT)
    home = tmp / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "ACRM_LANDING_DIR": str(tmp / "landing"),
        "ACRM_DUCKDB_PATH": str(tmp / "acrm.duckdb"),
        "ACRM_OUTBOX_DIR": str(tmp / "outbox"),
        "ACRM_SEGMENTS_DIR": str(segments),
        "ACRM_EXPORTS_DIR": str(exports),
        "ACRM_JOURNEYS_DIR": str(exports / "no_journeys"),
        "ACRM_START_DATE": "2019-01-01",
    }
    done = _cli("acrm", "run", "--as-of", RUN_DAY, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    done = _cli("acrm", "backfill", "--from", BACKFILL_DAY, "--to", BACKFILL_DAY, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return env


@pytest.fixture(scope="module")
def ui(instance_env: dict[str, str]):
    """What the webserver would answer: the GraphQL schema over workspace.yaml's code location, in that instance."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in instance_env.items():
            patch.setenv(name, value)  # the code server loads the definitions with these settings
        patch.chdir(REPO)  # workspace.yaml's working_directory is "."
        with (
            DagsterInstance.from_config(instance_env["DAGSTER_HOME"]) as instance,
            define_out_of_process_context(str(REPO / "workspace.yaml"), None, instance) as context,
        ):
            yield context


def _query(context, query: str, **variables) -> dict:
    result = execute_dagster_graphql(context, query, variables=variables)
    assert not result.errors, result.errors
    return result.data


def _selector(context) -> dict[str, str]:
    (location,) = [e["name"] for e in _query(context, WORKSPACE)["workspaceOrError"]["locationEntries"]]
    return {"repositoryLocationName": location, "repositoryName": REPOSITORY}


@pytest.mark.timeout(900)
def test_cli_runs_are_the_jobs_runs_in_the_ui(instance_env: dict[str, str], ui) -> None:
    selector = _selector(ui)
    label = f"{REPOSITORY}@{selector['repositoryLocationName']}"
    job = _query(ui, JOB_RUNS, selector={**selector, "pipelineName": DAILY_JOB})["pipelineOrError"]
    assert job["__typename"] == "Pipeline", job
    runs = {r["runId"]: r for r in job["runs"]}
    by_partition = {
        tag["value"]: run for run in runs.values() for tag in run["tags"] if tag["key"] == PARTITION_NAME_TAG
    }
    assert sorted(by_partition) == [BACKFILL_DAY, RUN_DAY] and len(runs) == 2
    for run in runs.values():
        assert run["status"] == "SUCCESS"
        assert run["repositoryOrigin"] == {
            "repositoryLocationName": selector["repositoryLocationName"],
            "repositoryName": REPOSITORY,
        }
    # The filter the UI's run lists use: the job's name and its repository's label.
    tagged = _query(
        ui,
        RUNS_OF_REPOSITORY,
        filter={"pipelineName": DAILY_JOB, "tags": [{"key": REPOSITORY_LABEL_TAG, "value": label}]},
    )["runsOrError"]["results"]
    assert {r["runId"] for r in tagged} == set(runs)

    # The same in the instance's own records, with everything `acrm` tags its runs with.
    with DagsterInstance.from_config(instance_env["DAGSTER_HOME"]) as instance:
        records = {r.dagster_run.tags[PARTITION_NAME_TAG]: r.dagster_run for r in instance.get_run_records()}
        assert set(records) == {RUN_DAY, BACKFILL_DAY}
        for run in records.values():
            assert run.job_name == DAILY_JOB
            assert run.remote_job_origin.repository_origin.get_label() == label
            assert run.remote_job_origin.job_name == DAILY_JOB
            assert run.job_code_origin.job_name == DAILY_JOB
            assert {"acrm/pid", "acrm/host", "acrm/proc_start"} <= set(run.tags)
        assert BACKFILL_TAGS[1] not in records[RUN_DAY].tags
        assert records[BACKFILL_DAY].tags[BACKFILL_TAGS[1]] == f"{BACKFILL_DAY}..{BACKFILL_DAY}"
        assert records[BACKFILL_DAY].tags[SEND_TAG] == "false"
        # Stored with the label tag (`tags_for_storage`), which is what run lists filter on.
        labelled = instance.get_run_records(RunsFilter(job_name=DAILY_JOB, tags={REPOSITORY_LABEL_TAG: label}))
        assert {r.dagster_run.run_id for r in labelled} == set(runs)


@pytest.mark.timeout(900)
def test_no_partition_of_the_job_is_missing_after_the_runs(instance_env: dict[str, str], ui) -> None:
    selector = {**_selector(ui), "pipelineName": DAILY_JOB}
    nodes = _query(ui, PARTITIONS, selector=selector)["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    assert {"segments/paused_keyed", "segments/static_keyed", "segment_set", "customer_features"} <= keys
    assert any(k.startswith("exports/") for k in keys) and any(k.startswith("raw_") for k in keys)
    days = {BACKFILL_DAY, RUN_DAY}
    # What the UI reads: each asset's partition ranges, materialized ones covering both days.
    for node in nodes:
        statuses = node["assetPartitionStatuses"]
        assert statuses["__typename"] == "TimePartitionStatuses", node
        covered = {
            day
            for r in statuses["ranges"]
            if r["status"] == "MATERIALIZED"
            for day in days
            if r["startKey"] <= day <= r["endKey"]
        }
        assert covered == days, f"{'/'.join(node['assetKey']['path'])}: {statuses['ranges']}"
    # And the instance's own account of materialized partitions, key by key.
    with DagsterInstance.from_config(instance_env["DAGSTER_HOME"]) as instance:
        missing = {key: days - instance.get_materialized_partitions(AssetKey(key.split("/"))) for key in keys}
        assert {key: gone for key, gone in missing.items() if gone} == {}
        paused = instance.get_latest_materialization_event(AssetKey(["segments", "paused_keyed"]))
        metadata = paused.asset_materialization.metadata
        assert metadata["status"].value == "inactive: not re-evaluated"
        assert metadata["last_evaluation"].value == "never" and metadata["size"].value == 0
        export = instance.get_latest_materialization_event(AssetKey(["exports", "paused_file"]))
        assert export.asset_materialization.metadata["not_sent"].value == (
            "not sent: segment paused_keyed is inactive (active: false)"
        )
    assert not (Path(instance_env["ACRM_OUTBOX_DIR"]) / "paused_file").exists()


@pytest.mark.timeout(900)
def test_nightly_schedule_starts_stopped_and_the_documented_command_starts_it(instance_env: dict[str, str], ui) -> None:
    selector = {**_selector(ui), "scheduleName": NIGHTLY_SCHEDULE}
    schedule = _query(ui, SCHEDULE, selector=selector)["scheduleOrError"]
    assert schedule == {"__typename": "Schedule", "scheduleState": {"status": "STOPPED"}}
    # docs/operations.md, "The nightly schedule": the command that switches it on.
    done = _cli(
        "dagster", "schedule", "start", NIGHTLY_SCHEDULE, "-w", "workspace.yaml", env={**os.environ, **instance_env}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Started schedule {NIGHTLY_SCHEDULE}" in done.stdout
    schedule = _query(ui, SCHEDULE, selector=selector)["scheduleOrError"]
    assert schedule["scheduleState"]["status"] == "RUNNING"
    done = _cli(
        "dagster", "schedule", "stop", NIGHTLY_SCHEDULE, "-w", "workspace.yaml", env={**os.environ, **instance_env}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _query(ui, SCHEDULE, selector=selector)["scheduleOrError"]["scheduleState"]["status"] == "STOPPED"
