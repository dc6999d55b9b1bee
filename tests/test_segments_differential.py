"""The segment engine against the independent pandas reference (tests/reference/segments.py).

Hypothesis writes random definitions — rule trees up to depth 3 over real features of every type, with
every operator, relative / absolute / year-less dates and behaviour conditions over the four sources with
every metric and window unit — plus set operations, priority lists and splits built on them. Values are
drawn from the demo data so that memberships are neither empty nor everyone. The definitions go through
YAML files and the validator, the engine evaluates the whole set at once, and every segment's members
and arms must equal the reference's.
"""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import date

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import load_segments
from tests.cases.demo import DEMO_END
from tests.cases.segment_strategies import segment_set, value_pools
from tests.reference.segments import Reference, read_marts

# The demo data's last day, and a day whose month arithmetic clips (D + 1 = 31 Aug: 1M back is 31 Jul,
# 2M back 30 Jun, 6M back 28 Feb; relative -6M from 30 Aug is 28 Feb too).
AS_OF_DATES = [DEMO_END, date(2026, 8, 30)]

MAX_EXAMPLES = int(os.environ.get("ACRM_DIFFERENTIAL_EXAMPLES", "150"))  # per as-of date


# --- the database ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=AS_OF_DATES, ids=str)
def world(request, demo_landing, tmp_path_factory, run_pipeline, make_settings):
    """One pipeline run over the demo data for the as-of date, opened read-only for engine and reference."""
    as_of: date = request.param
    tmp = tmp_path_factory.mktemp(f"differential_{as_of:%Y%m%d}")
    settings = dataclasses.replace(make_settings(tmp, demo_landing), segments_dir=tmp / "no_segments")
    settings.segments_dir.mkdir()
    run_pipeline(settings, as_of.isoformat())
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    frames = read_marts(con)
    yield {
        "as_of": as_of,
        "con": con,
        "catalogue": load_catalogue(settings.duckdb_path),
        "reference": Reference(frames, {}, as_of),
        "pools": value_pools(frames, as_of),
    }
    con.close()


# --- the comparison ----------------------------------------------------------------------------------


def _yaml(definitions: list[dict], keys: list[str]) -> str:
    return yaml.safe_dump_all([d for d in definitions if d["key"] in keys], sort_keys=False, allow_unicode=True)


def test_engine_matches_reference(world, tmp_path_factory) -> None:
    from acrm_pipelines.segments.evaluate import evaluate

    stats: dict[str, list] = {"sizes": [], "seconds": []}

    pools, as_of = world["pools"], world["as_of"]
    universe = len(world["reference"].ids)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(definitions=segment_set(pools))
    def check(definitions: list[dict]) -> None:
        folder = tmp_path_factory.mktemp("defs")
        (folder / "generated.yaml").write_text(_yaml(definitions, [d["key"] for d in definitions]))
        segset = load_segments([folder], world["catalogue"])
        started = time.monotonic()
        try:
            result = evaluate(world["con"], segset, as_of)
        except Exception as err:
            keys = [d["key"] for d in definitions]
            pytest.fail(f"the engine failed as of {as_of}: {err!r}\n--- definitions ---\n{_yaml(definitions, keys)}")
        stats["seconds"].append(time.monotonic() - started)
        reference = world["reference"].with_segments({k: segset[k] for k in segset.definitions})
        for key in segset.order:
            segment = segset[key]
            expected = reference.members(key)
            members = result.members(key)
            arms = result.arms(key) if segment.arms or segment.split is not None else {}
            got = {c: arms.get(c) for c in members}
            stats["sizes"].append(len(expected))
            if got != expected:
                missing = sorted(set(expected) - set(got))
                extra = sorted(set(got) - set(expected))
                other_arm = sorted(c for c in set(got) & set(expected) if got[c] != expected[c])
                needed = segset.closure([key])
                pytest.fail(
                    f"segment {key!r} as of {as_of}: engine {len(got)} members, reference {len(expected)}\n"
                    f"only the reference has: {missing[:5]}\nonly the engine has: {extra[:5]}\n"
                    f"different arms (customer, engine, reference): "
                    f"{[(c, got[c], expected[c]) for c in other_arm[:5]]}\n"
                    f"--- definitions ---\n{_yaml(definitions, needed)}"
                )

    check()
    sizes = stats["sizes"]
    print(
        f"{len(stats['seconds'])} sets, {len(sizes)} segments compared, engine {sum(stats['seconds']):.1f} s; "
        f"empty {sum(s == 0 for s in sizes)}, everyone {sum(s == universe for s in sizes)}"
    )
    # the generated memberships must be informative: not all empty, not all everyone
    assert sum(0 < s < universe for s in sizes) > len(sizes) // 3, sizes
