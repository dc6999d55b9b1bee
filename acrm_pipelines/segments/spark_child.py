"""Segments evaluated on Spark in a child process (ACRM_ENGINE=spark, docs/spark.md).

The Dagster run never hosts a JVM: the segment step hands the definitions, the date and the frozen
memberships to this child, which opens the project's Spark session, evaluates (evaluate_spark.py) and hands
the Evaluation back; the step then records the history in the DuckDB file as on DuckDB. The child reads the
DuckDB file (the history's customer index) read-only, so the step lets go of it while the child runs.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from acrm_pipelines.segments.evaluate import Evaluation, Fixed
from acrm_pipelines.segments.validate import SegmentSet
from acrm_pipelines.settings import Settings


class SparkEvaluationFailed(Exception):
    """The child could not evaluate the segments on Spark (its error output is in the message)."""


def evaluate_on_spark(
    settings: Settings, segments: SegmentSet, as_of: date, keys: Sequence[str], fixed: dict[str, Fixed]
) -> Evaluation:
    settings.spark_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.spark_dir, prefix="segments-") as tmp:
        given, taken = Path(tmp) / "given.pickle", Path(tmp) / "taken.pickle"
        given.write_bytes(pickle.dumps((settings, segments, as_of, list(keys), fixed)))
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(given), str(taken)], capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise SparkEvaluationFailed(
                f"segments on Spark as of {as_of} failed: {(done.stderr or done.stdout).strip()[-3000:]}"
            )
        return pickle.loads(taken.read_bytes())


def main(given: str, taken: str) -> None:
    import duckdb

    from acrm_pipelines import spark as engine
    from acrm_pipelines.child import die_with_parent
    from acrm_pipelines.segments.evaluate_spark import evaluate_spark

    die_with_parent()
    settings, segments, as_of, keys, fixed = pickle.loads(Path(given).read_bytes())
    session = engine.session(settings)
    try:
        built = session.sql("SELECT max(as_of) FROM marts.customer_features").collect()[0][0]
        if built != as_of:  # e.g. `acrm spark run` built another day in the same ACRM_SPARK_DIR since
            sys.exit(f"Spark's marts.customer_features are of {built}, not {as_of}: materialize the features first")
        config = settings.duckdb_config()  # the JVM has its own memory: DuckDB keeps to its limit beside it
        with duckdb.connect(str(settings.duckdb_path), read_only=True, config=config) as con:
            evaluation = evaluate_spark(session, con, segments, as_of, keys, fixed)
        Path(taken).write_bytes(pickle.dumps(evaluation))
    finally:
        engine.stop(session)


if __name__ == "__main__":
    main(*sys.argv[1:3])
