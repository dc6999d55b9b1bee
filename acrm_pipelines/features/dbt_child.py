"""`acrm-dbt`: the dbt command, stopped by the kernel when the process that started it dies.

dagster-dbt starts dbt as a plain child process; when a run is killed (SIGKILL, OOM), that child would go
on writing the DuckDB file as an orphan. PR_SET_PDEATHSIG asks Linux to kill it with its parent.

With ACRM_ENGINE=spark (docs/spark.md) dbt runs in this process after the project's Spark session is
opened (quiet, its JVM's output in ACRM_SPARK_DIR/spark.log) and the DuckDB file's raw tables are handed
to it, so dbt-spark's `session` method builds on them. dbt's JSON log reaches dagster-dbt as from dbt.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from acrm_pipelines.child import die_with_parent


def main() -> None:
    die_with_parent()
    if os.environ.get("ACRM_ENGINE") == "spark":
        sys.exit(_dbt_on_spark(sys.argv[1:]))
    dbt = Path(sys.executable).parent / "dbt"
    os.execv(dbt, [str(dbt), *sys.argv[1:]])  # the death signal is kept across exec


def _dbt_on_spark(args: list[str]) -> int:
    import duckdb
    from dbt.cli.main import dbtRunner

    from acrm_pipelines import spark as engine
    from acrm_pipelines.ingest.to_spark import publish_raw
    from acrm_pipelines.settings import Settings

    if not args or args[0] not in ("build", "run"):  # parse, ls, …: no session, no data
        return _exit_code(dbtRunner().invoke(args))
    try:
        settings = Settings.from_env()
        session = engine.session(settings)
    except Exception as err:  # noqa: BLE001 - reported to Dagster as dbt reports its errors
        return _error(f"the Spark session could not start: {err}")
    try:
        with duckdb.connect(str(settings.duckdb_path), read_only=True, config=settings.duckdb_config()) as con:
            publish_raw(con, session, settings.spark_dir)
    except Exception as err:  # noqa: BLE001
        engine.stop(session)
        return _error(f"the raw tables could not be handed to Spark: {err}")
    try:
        return _exit_code(dbtRunner().invoke(args))
    finally:
        engine.stop(session)


def _exit_code(result) -> int:
    """dbt's own exit codes: 0 success, 1 a model or test failed, 2 dbt itself failed."""
    if result.exception is not None:
        return _error(f"dbt on Spark failed: {result.exception!r}")
    return 0 if result.success else 1


def _error(message: str) -> int:
    """An error line in dbt's JSON log format, which dagster-dbt puts in the step's failure (DBT_LOG_FORMAT=json
    under Dagster; plain text otherwise)."""
    if os.environ.get("DBT_LOG_FORMAT") == "json":
        print(json.dumps({"info": {"level": "error", "msg": message, "name": "AcrmSparkError"}}), flush=True)
    else:
        print(message, file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    main()
