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
from acrm_pipelines.settings import REPO_ROOT
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
        make_settings(tmp, landing, with_exports=True),
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
    from acrm_pipelines.features.spark_build import build_on_spark

    settings, session = base
    as_of: date = request.param
    summary = run_pipeline(settings, as_of.isoformat())
    build = build_on_spark(settings, session, as_of)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert build.rows["orders"] == con.execute("SELECT count(*) FROM raw.orders").fetchone()[0] > 1000
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    yield {"as_of": as_of, "settings": settings, "spark": session, "con": con, "summary": summary}
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


def test_acrm_spark_run_compares_every_segment_with_the_recorded_memberships(day, capsys) -> None:
    """`acrm spark run --as-of D --compare` on the module's files (in this process, so on its session): the
    members it prints per segment are those the DuckDB pipeline recorded for the day."""
    from acrm_pipelines.cli import main
    from acrm_pipelines.segments.members import members_at
    from acrm_pipelines.segments.validate import load_segment_set

    if day["as_of"] != AS_OF_DATES[-1]:
        pytest.skip("once, on the last date")
    settings = day["settings"]
    env = {
        "ACRM_LANDING_DIR": settings.landing_dir,
        "ACRM_DUCKDB_PATH": settings.duckdb_path,
        "ACRM_SEGMENTS_DIR": settings.segments_dir,
        "ACRM_EXPORTS_DIR": settings.exports_dir,
        "ACRM_JOURNEYS_DIR": settings.journeys_dir,
        "ACRM_SPARK_DIR": settings.spark_dir,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, str(value))
        code = main(["spark", "run", "--as-of", day["as_of"].isoformat(), "--compare"])
    out = capsys.readouterr().out
    segset = load_segment_set(settings)
    printed = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in segset.order:
            printed[parts[0]] = (int(parts[1].replace(",", "")), parts[3])
    # The pipeline re-evaluates active dynamic segments only (static ones keep their first members, inactive
    # ones their last); the command evaluates every definition as written.
    live = [
        k for k in segset.order if all(segset[r].active and segset[r].type == "dynamic" for r in segset.closure([k]))
    ]
    assert len(live) >= 12
    recorded = {key: len(members_at(day["con"], key, day["as_of"])) for key in live}
    assert {k: n for k, (n, _) in printed.items() if k in live} == recorded
    assert set(printed) == set(segset.order)
    assert {same for _, same in printed.values()} == {"yes"}
    assert f"{len(segset.order)} of {len(segset.order)} segments have the same members and arms" in out
    assert f"features: equal to DuckDB's of {day['as_of']}" in out
    assert code == 0


@pytest.fixture(scope="module")
def on_spark(base, run_pipeline, tmp_path_factory):
    """The whole daily job (`acrm run`) with ACRM_ENGINE=spark for the first date, on files of its own: the
    same landing folder, its own DuckDB file, outbox and Spark folder (a metastore of its own: the
    module's session holds the other)."""
    settings, _ = base
    tmp = tmp_path_factory.mktemp("on_spark")
    spark_settings = dataclasses.replace(
        settings, engine="spark", duckdb_path=tmp / "acrm.duckdb", outbox_dir=tmp / "outbox", spark_dir=tmp / "spark"
    )
    summary = run_pipeline(spark_settings, AS_OF_DATES[0].isoformat())
    return spark_settings, summary


def _counts(exports: dict[str, dict]) -> dict[str, dict[str, int]]:
    """The whole-number metadata of each export's materialization (sent, suppressed, …): not its location
    or time."""
    return {key: {k: v for k, v in m.items() if type(v) is int} for key, m in exports.items()}


def _outbox(folder: Path) -> dict[str, list[dict]]:
    """Every file the exports wrote, by path under the outbox, as rows (promo codes are drawn at random:
    their codes are left out, the customers they went to stay)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
        files[str(path.relative_to(folder))] = table.drop_columns([c for c in ("code",) if c in table.column_names])
    return files


def test_the_dagster_run_on_spark_records_and_sends_what_duckdb_does(day, on_spark) -> None:
    """`acrm run` on Spark (features by dbt-spark, segments by Spark SQL, each in a child process) loads,
    checks, records and sends the same as on DuckDB: the run summary, each segment's members and arms in the
    history, the features the exports read, and every export file."""
    from acrm_pipelines.segments.members import members_at

    if day["as_of"] != AS_OF_DATES[0]:
        pytest.skip("the first date: both files then hold one run each")
    spark_settings, spark = on_spark
    duck = day["summary"]
    assert spark.loaded == duck.loaded and spark.quarantined == duck.quarantined
    assert sum(duck.quarantined.values()) > 0, "the fixture's bad rows are quarantined on both"
    assert spark.customers_featured == duck.customers_featured > 300
    assert spark.checks_failed == duck.checks_failed
    assert spark.segments_failed == duck.segments_failed == {}
    assert spark.segments == duck.segments and len(duck.segments) >= 12
    assert _counts(spark.exports) == _counts(duck.exports)
    assert len(duck.exports) >= 7 and sum(sum(c.values()) for c in _counts(duck.exports).values()) > 50
    # Spark did the work: its warehouse holds the marts, the DuckDB file only the views and what was taken back.
    assert list((spark_settings.spark_dir / "warehouse" / "marts.db" / "customer_features").glob("*.parquet"))
    built_by_dbt = "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'intermediate' ORDER BY 1"
    assert len(day["con"].execute(built_by_dbt).fetchall()) > 1
    features = "SELECT * FROM marts.customer_features ORDER BY customer_id"
    with duckdb.connect(str(spark_settings.duckdb_path), read_only=True) as con:
        # Only the stored order lines, which the DuckDB file's line views read (features/lines.py).
        assert con.execute(built_by_dbt).fetchall() == [("int_order_lines_all",)]
        lines = "SELECT * FROM intermediate.int_order_lines_all ORDER BY line_row"
        assert con.sql(lines).to_arrow_table().equals(day["con"].sql(lines).to_arrow_table())
        assert con.sql(features).to_arrow_table().equals(day["con"].sql(features).to_arrow_table())
        # The history's reader (acrm preview/explain at a past date) is there too, and reads the same day.
        on_day = f"SELECT * FROM marts.customer_features_on(DATE '{day['as_of']}') ORDER BY customer_id"
        assert con.sql(on_day).to_arrow_table().equals(day["con"].sql(on_day).to_arrow_table())
        for key in duck.segments:
            assert members_at(con, key, day["as_of"]) == members_at(day["con"], key, day["as_of"]), key
    duck_files, spark_files = _outbox(day["settings"].outbox_dir), _outbox(spark_settings.outbox_dir)
    assert set(spark_files) == set(duck_files) and len(duck_files) >= 7
    assert sum(t.num_rows for t in duck_files.values()) > 50
    for name, table in duck_files.items():
        assert spark_files[name].schema == table.schema, name
        assert spark_files[name].to_pylist() == table.to_pylist(), name
