"""`acrm-dbt`: the dbt command, stopped by the kernel when the process that started it dies.

dagster-dbt starts dbt as a plain child process; when a run is killed (SIGKILL, OOM), that child would go
on writing the DuckDB file as an orphan. PR_SET_PDEATHSIG asks Linux to kill it with its parent.

With ACRM_ENGINE=spark (docs/spark.md) dbt runs in this process after the project's Spark session is
opened (quiet, its JVM's output in ACRM_SPARK_DIR/spark.log) and the DuckDB file's raw tables are handed
to it, so dbt-spark's `session` method builds on them. dbt's JSON log reaches dagster-dbt as from dbt.
"""

from __future__ import annotations

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

    settings = Settings.from_env()
    session = engine.session(settings)
    if args and args[0] in ("build", "run"):
        with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
            publish_raw(con, session, settings.spark_dir)
    result = dbtRunner().invoke(args)
    if result.exception is not None:
        print(f"dbt on Spark failed: {result.exception!r}", file=sys.stderr)
        return 2
    return 0 if result.success else 1  # dbt's own exit codes


if __name__ == "__main__":
    main()
