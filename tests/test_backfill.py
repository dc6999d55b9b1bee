"""Backfills are point-in-time: rows added later change no past partition's features or membership."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
from dagster import AssetKey, DagsterInstance

from acrm_pipelines.automation.runner import backfill
from acrm_pipelines.definitions import build_definitions
from acrm_pipelines.segments.members import members_at

DAYS = [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)]
SEGMENTS = """\
key: buyers
rules: {field: orders_count, op: ">=", value: 1}
---
key: bought_today
rules: {purchase: {}, within: 1d, count: {">=": 1}}
---
key: big_spenders
rules: {field: total_amount, op: ">", value: 100}
"""
ORDERS = [
    ["1", "a", "2024-02-20 10:00:00", "50"],
    ["2", "b", "2024-03-01 12:00:00", "80"],
    ["3", "a", "2024-03-02 09:00:00", "70"],
    ["4", "c", "2024-03-03 23:59:59", "200"],
]
LATER_ORDERS = [  # dated after the last backfilled day: they must change nothing
    ["5", "b", "2024-03-04 00:00:00", "500"],
    ["6", "d", "2024-03-10 10:00:00", "10"],
]


def snapshot(settings) -> pd.DataFrame:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute("SELECT * EXCLUDE (as_of) FROM marts.customer_features ORDER BY customer_id").df()


def memberships(settings) -> dict:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return {
            (key, day): members_at(con, key, day) for key in ("buyers", "bought_today", "big_spenders") for day in DAYS
        } | {
            "counts": con.execute(
                "SELECT segment_key, as_of, size, entered, exited FROM segments.evaluations ORDER BY ALL"
            ).fetchall()
        }


def test_backfill_after_later_rows_gives_the_same_features_and_membership(
    tmp_path: Path, write_csv, make_settings
) -> None:
    land = tmp_path / "landing"
    write_csv(
        land / "customers.csv",
        ["customer_id", "registered_at"],
        [["a", "2024-01-01"], ["b", "2024-01-01"], ["c", "2024-03-02 08:00:00"]],
    )
    write_csv(land / "orders.csv", ["order_id", "customer_id", "ordered_at", "total_amount"], ORDERS)
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "s.yaml").write_text(SEGMENTS)
    settings = dataclasses.replace(make_settings(tmp_path, land), segments_dir=tmp_path / "segments")
    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()

    first: dict[date, pd.DataFrame] = {}
    backfill(
        defs,
        settings,
        DAYS[0],
        DAYS[-1],
        instance,
        after_each=lambda s: first.__setitem__(date.fromisoformat(s.as_of), snapshot(settings)),
    )
    before = memberships(settings)
    # Hand-checked: on 03-02 c exists (registered that morning) without orders; a bought on 03-02.
    assert before[("buyers", DAYS[1])] == [("a", None), ("b", None)]
    assert before[("bought_today", DAYS[1])] == [("a", None)]
    assert before[("big_spenders", DAYS[2])] == [("a", None), ("c", None)]
    assert list(first[DAYS[0]]["customer_id"]) == ["a", "b"]  # c registers on 03-02

    # Later rows arrive: a new customer, orders after the range, a registration after it.
    write_csv(land / "orders.csv", ["order_id", "customer_id", "ordered_at", "total_amount"], ORDERS + LATER_ORDERS)
    write_csv(
        land / "customers.csv",
        ["customer_id", "registered_at"],
        [["a", "2024-01-01"], ["b", "2024-01-01"], ["c", "2024-03-02 08:00:00"], ["d", "2024-03-05"]],
    )
    again: dict[date, pd.DataFrame] = {}
    backfill(
        defs,
        settings,
        DAYS[0],
        DAYS[-1],
        instance,
        after_each=lambda s: again.__setitem__(date.fromisoformat(s.as_of), snapshot(settings)),
    )
    for day in DAYS:
        pd.testing.assert_frame_equal(again[day], first[day], obj=f"features as of {day}")
    assert memberships(settings) == before
    # Each backfill loaded the landing files once, on its first day; the other days kept that load.
    records = instance.fetch_materializations(AssetKey("raw_orders"), limit=100).records
    reused = [r.asset_materialization.metadata["reused"].value for r in sorted(records, key=lambda r: r.storage_id)]
    assert reused == [False, True, True, False, True, True]

    # The same rows do count for a later day (the test could fail).
    backfill(defs, settings, date(2024, 3, 4), date(2024, 3, 4), instance)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert members_at(con, "big_spenders", date(2024, 3, 4)) == [("a", None), ("b", None), ("c", None)]


def test_cli_backfill_rejects_a_reversed_range(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ACRM_DUCKDB_PATH": str(tmp_path / "x.duckdb"),
        "ACRM_LANDING_DIR": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path),
        "ACRM_START_DATE": "2024-01-01",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "acrm"), "backfill", "--from", "2024-03-03", "--to", "2024-03-01"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1
    assert "--to 2024-03-01 is before --from 2024-03-03" in done.stderr
