"""DuckDB against Spark (ACRM_ENGINE=spark, docs/spark.md): the same dbt models and the same segment
definitions on both engines give the same features, memberships and arms.

A small demo landing folder (400 customers, with the deliberately bad rows) goes through the whole
pipeline on DuckDB for each of three as-of dates. The loaded raw tables are handed to Spark
(`ingest/to_spark.py`) and dbt builds the same models there through the `spark` target (dbt-spark's
`session` method, in this process: one local Spark session for the module). Then, per date:

- every column of marts.customer_features is equal, value for value and type for type;
- the repo's segments, and random definitions of every block kind (tests/cases/segment_strategies.py:
  every field operator and type, behaviour windows over the four sources with every metric and unit,
  relative and year-less dates, set operations, priority lists, splits by weight and by field), have the
  same members with the same arms when evaluated by DuckDB (`evaluate`) and by Spark SQL
  (`evaluate_spark`).

No definition is changed between engines: both read the same YAML files.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import load_segments
from acrm_pipelines.settings import DBT_PROJECT_DIR, REPO_ROOT
from tests.cases.demo import DEMO_END
from tests.cases.segment_strategies import segment_set, value_pools
from tests.reference.segments import read_marts

# The demo's last day, a day whose month arithmetic clips, and a year end.
AS_OF_DATES = [DEMO_END, date(2026, 8, 30), date(2025, 12, 31)]
EXAMPLES = int(os.environ.get("ACRM_SPARK_EXAMPLES", "6"))  # random definition sets per as-of date


@pytest.fixture(scope="module")
def base(tmp_path_factory, make_settings):
    from acrm_pipelines import spark as engine
    from acrm_pipelines.demo.generator import generate

    tmp = tmp_path_factory.mktemp("spark")
    landing = tmp / "landing"
    generate(landing, customers=400, seed=11, fmt="csv", end_date=DEMO_END)
    settings = dataclasses.replace(
        make_settings(tmp, landing),
        segments_dir=REPO_ROOT / "segments",
        spark_dir=tmp / "spark",
        spark_driver_memory="1g",
        spark_shuffle_partitions=2,
    )
    session = engine.session(settings)
    yield settings, session
    session.stop()


@pytest.fixture(scope="module", params=AS_OF_DATES, ids=str)
def day(request, base, run_pipeline):
    """The pipeline on DuckDB for the date, then the same dbt models built on Spark for it."""
    from dbt.cli.main import dbtRunner

    from acrm_pipelines.ingest.to_spark import publish_raw

    settings, session = base
    as_of: date = request.param
    run_pipeline(settings, as_of.isoformat())
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        publish_raw(con, session, settings.spark_dir)
    args = ["build", "--target", "spark", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    args += ["--target-path", str(settings.spark_dir / "dbt_target"), "--vars", f"{{as_of: '{as_of}'}}"]
    args += ["--exclude", "path:models/analytics", "--quiet"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ACRM_SPARK_DIR", str(settings.spark_dir))
        result = dbtRunner().invoke(args)
    failures = [f"{r.node.unique_id}: {r.message}" for r in result.result or [] if r.status not in ("success", "pass")]
    assert result.success, f"dbt build on Spark as of {as_of} failed: {result.exception or failures}"
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    yield {"as_of": as_of, "settings": settings, "spark": session, "con": con}
    con.close()


def test_features_are_equal(day) -> None:
    duck = day["con"].sql("SELECT * FROM marts.customer_features ORDER BY customer_id").to_arrow_table()
    spark = day["spark"].sql("SELECT * FROM marts.customer_features ORDER BY customer_id").toArrow()
    assert duck.num_rows > 300, "the fixture should have hundreds of customers"
    assert spark.column_names == duck.column_names
    for name in duck.column_names:
        assert spark[name].type == duck[name].type, f"{name}: Spark {spark[name].type}, DuckDB {duck[name].type}"
        left, right = spark[name].to_pylist(), duck[name].to_pylist()
        differ = [(i, a, b) for i, (a, b) in enumerate(zip(left, right, strict=True)) if a != b]
        assert not differ, (
            f"{name} as of {day['as_of']}: {len(differ)} rows differ, e.g. (row, Spark, DuckDB) {differ[:3]}"
        )
    assert _nulls(duck) == _nulls(spark)


def test_feature_history_is_equal(day) -> None:
    """Every built day's features as validity intervals, after the same days in the same order (the later
    dates were built before the earlier ones, which split the intervals around them)."""
    query = "SELECT * FROM marts.customer_features_history ORDER BY customer_id, valid_from"
    duck = day["con"].sql(query).to_arrow_table()
    spark = day["spark"].sql(query).toArrow().select(duck.column_names)
    assert duck.num_rows > 300
    assert spark.to_pylist() == duck.to_pylist()
    dates = "SELECT as_of, customers, changed FROM marts.customer_features_dates ORDER BY as_of"
    built = day["con"].sql(dates).fetchall()
    assert [tuple(r) for r in day["spark"].sql(dates).collect()] == built
    assert [r[0] for r in built] == sorted(AS_OF_DATES[: AS_OF_DATES.index(day["as_of"]) + 1])


def _nulls(table: pa.Table) -> dict[str, int]:
    return {name: table[name].null_count for name in table.column_names}


def _memberships(result, segset) -> dict[str, dict[str, str | None]]:
    out = {}
    for key in segset.order:
        if key in result.failed:
            out[key] = {"failed": result.failed[key]}
            continue
        arms = result.arms(key)
        out[key] = {c: arms.get(c) for c in result.members(key)}
    return out


def _compare(day, segset) -> int:
    from acrm_pipelines.segments.evaluate import evaluate
    from acrm_pipelines.segments.evaluate_spark import evaluate_spark

    duck = evaluate(day["con"], segset, day["as_of"])
    spark = evaluate_spark(day["spark"], day["con"], segset, day["as_of"])
    assert spark.ids.equals(duck.ids), "rows in the history's customer order on both engines"
    left, right = _memberships(duck, segset), _memberships(spark, segset)
    for key in segset.order:
        got, expected = right[key], left[key]
        if got != expected:
            only_spark = sorted(set(got) - set(expected))[:5]
            only_duck = sorted(set(expected) - set(got))[:5]
            arms = [(c, got[c], expected[c]) for c in sorted(set(got) & set(expected)) if got[c] != expected[c]]
            pytest.fail(
                f"segment {key!r} as of {day['as_of']}: Spark {len(got)} members, DuckDB {len(expected)}; only Spark "
                f"{only_spark}, only DuckDB {only_duck}, other arms (customer, Spark, DuckDB) {arms[:5]}\n"
                + "\n".join(repr(segset[k]) for k in segset.closure([key]))
            )
    return sum(len(m) for m in left.values())


def test_repo_segments_have_the_same_members_and_arms(day) -> None:
    from acrm_pipelines.segments.validate import load_segment_set

    segset = load_segment_set(day["settings"])
    assert len(segset.order) >= 15
    assert _compare(day, segset) > 0


def test_random_definitions_have_the_same_members_and_arms(day, tmp_path_factory) -> None:
    frames = read_marts(day["con"])
    pools = value_pools(frames, day["as_of"])
    catalogue = load_catalogue(day["settings"].duckdb_path)
    compared: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(definitions=segment_set(pools))
    def check(definitions: list[dict]) -> None:
        folder: Path = tmp_path_factory.mktemp("defs")
        (folder / "generated.yaml").write_text(yaml.safe_dump_all(definitions, sort_keys=False, allow_unicode=True))
        segset = load_segments([folder], catalogue)
        compared.append(_compare(day, segset))

    check()
    assert len(compared) == EXAMPLES and sum(compared) > 0
