"""Hand-computed segment memberships on a tiny landing folder, for the engine and the pandas reference.

Every expected membership below is written by hand from docs/segments.md (the reasoning is in the
comments), not computed by any code. Two as-of dates, one pipeline run each:
- 2025-12-30 (2025 is not a leap year): birthdays over New Year, 29 Feb counting as 1 Mar, priority
  and splits;
- 2024-03-31 (a leap year): 29 Feb as itself, calendar-month windows and relative dates, the
  `within: 1d` boundary, purchase metrics over order lines, message actions, bonus signs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml

from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import SegmentSet, load_segments
from tests.reference.segments import read_marts, reference_members

DEC = date(2025, 12, 30)
MAR = date(2024, 3, 31)
OLD = "2020-01-01 00:00:00"

# --- the landing folder ------------------------------------------------------------------------------

CUSTOMERS = [
    # customer_id, birth_date, registered_at, city
    ["b_dec01", "1980-12-01", OLD, "Kazan"],
    ["b_dec02", "1980-12-02", OLD, "Omsk"],
    ["b_dec31", "1990-12-31", OLD, "Omsk"],
    ["b_jan03", "1985-01-03", OLD, ""],
    ["b_jan04", "1985-01-04", OLD, "Kazan"],
    ["b_feb28", "1991-02-28", OLD, "Kazan"],
    ["b_feb29", "1992-02-29", OLD, "Kazan"],
    ["b_mar01", "1991-03-01", OLD, "Kazan"],
    ["b_none", "", OLD, "Kazan"],
    ["r_jan01", "", "2024-01-01 23:30:00", "Kazan"],  # as of 2024-03-31, -90d is 2024-01-01
    ["r_dec31", "", "2023-12-31 23:59:59", "Kazan"],
    ["late_reg", "", "2024-06-01 10:00:00", "Kazan"],  # does not exist yet as of 2024-03-31
    ["o_mar01", "", OLD, "Kazan"],
    ["o_feb29", "", OLD, "Kazan"],
    ["o_jan01", "", OLD, "Kazan"],
    ["o_dec31", "", OLD, "Kazan"],
    ["e_mid", "", OLD, "Kazan"],
    ["e_late", "", OLD, "Kazan"],
    ["e_next", "", OLD, "Kazan"],
    ["e_prev", "", OLD, "Kazan"],
    ["l_mix", "", OLD, "Kazan"],
    ["m_open", "", OLD, "Kazan"],
    ["k_bonus", "", OLD, "Kazan"],
]
EVERYONE = {row[0] for row in CUSTOMERS}
EXISTING_MAR = EVERYONE - {"late_reg"}


@pytest.fixture(scope="module")
def landing(tmp_path_factory, write_csv) -> Path:
    land = tmp_path_factory.mktemp("cases") / "landing"
    write_csv(land / "customers.csv", ["customer_id", "birth_date", "registered_at", "city"], CUSTOMERS)
    write_csv(
        land / "products.csv",
        ["product_id", "name", "category", "brand"],
        [["p_tea", "Tea", "Tea", "A"], ["p_cup", "Cup", "Teaware", "B"]],
    )
    write_csv(
        land / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "total_amount", "status", "store_id", "channel"],
        [
            ["o1", "o_mar01", "2024-03-01 00:00:00", "10", "completed", "s1", "web"],
            ["o2", "o_feb29", "2024-02-29 23:59:59", "10", "completed", "s1", "web"],
            ["o3", "o_jan01", "2024-01-01 00:00:00", "10", "completed", "s1", "web"],
            ["o4", "o_dec31", "2023-12-31 23:59:59", "10", "completed", "s1", "web"],
            ["L1", "l_mix", "2024-03-10 12:00:00", "1000", "completed", "s2", "app"],
            ["L2", "l_mix", "2024-03-20 12:00:00", "300", "cancelled", "s2", "app"],
        ],
    )
    write_csv(
        land / "order_lines.csv",
        ["order_id", "product_id", "quantity", "price"],
        [
            ["L1", "p_tea", "2", "100"],  # 200
            ["L1", "p_tea", "1", "50"],  # 50
            ["L1", "p_cup", "1", "700"],  # 700
            ["L2", "p_tea", "3", "100"],  # 300, cancelled order
        ],
    )
    write_csv(
        land / "events.csv",
        ["customer_id", "occurred_at", "event_type", "channel"],
        [
            ["e_mid", "2024-03-31 00:00:00", "site_visit", "web"],
            ["e_late", "2024-03-31 23:59:59", "site_visit", "web"],
            ["e_next", "2024-04-01 00:00:00", "site_visit", "web"],
            ["e_prev", "2024-03-30 23:59:59", "site_visit", "web"],
        ],
    )
    write_csv(
        land / "messages.csv",
        ["message_id", "customer_id", "campaign_id", "channel", "sent_at", "opened_at", "clicked_at"],
        [
            # sent long before the last 30 days, opened inside them, clicked after the as-of day
            ["m1", "m_open", "c1", "email", "2024-02-10 09:00:00", "2024-03-20 10:00:00", "2024-04-02 10:00:00"],
        ],
    )
    write_csv(
        land / "bonus_transactions.csv",
        ["customer_id", "occurred_at", "points", "reason"],
        [
            ["k_bonus", "2024-03-05 10:00:00", "500", "purchase"],
            ["k_bonus", "2024-03-06 10:00:00", "-200", "redemption"],
        ],
    )
    return land


# --- segments and hand-computed expectations ---------------------------------------------------------

DEC_SEGMENTS = """
key: bday_wrap
rules: {field: birth_date, op: between, value: ["12-02", "01-03"], ignore_year: true}
---
key: bday_next5
rules: {field: birth_date, op: between, value: [today, +5d], ignore_year: true}
---
key: not_bday_wrap
rules: {not: {field: birth_date, op: between, value: ["12-02", "01-03"], ignore_year: true}}
---
key: mar01_nonleap
rules: {field: birth_date, op: "=", value: "03-01", ignore_year: true}
---
key: feb28_nonleap
rules: {field: birth_date, op: between, value: ["02-28", "02-28"], ignore_year: true}
---
key: winter_months
rules: {field: birth_date, op: between, value: ["12-01", "01-31"], ignore_year: true}
---
key: prio_wrap_first
priority: [bday_wrap, winter_months]
---
key: prio_winter_first
priority: [winter_months, bday_wrap]
---
key: prio_filtered
priority: [bday_wrap, winter_months]
rules: {field: city, op: "=", value: Kazan}
---
key: wrap_control
rules: {field: birth_date, op: between, value: ["12-02", "01-03"], ignore_year: true}
split: {control: 10%, salt: xmas-2025}
---
key: wrap_abc
rules: {field: birth_date, op: between, value: ["12-02", "01-03"], ignore_year: true}
split: {arms: {a: 40, b: 50, c: 10}, salt: xmas-2025}
---
key: wrap_by_city
rules: {field: birth_date, op: between, value: ["12-02", "01-03"], ignore_year: true}
split: {by_field: city}
---
key: set_ops
from: {union: [winter_months, mar01_nonleap], intersect: [winter_months, bday_next5], minus: [bday_wrap]}
"""

BIRTHDAYS = {"b_dec01", "b_dec02", "b_dec31", "b_jan03", "b_jan04", "b_feb28", "b_feb29", "b_mar01"}
DEC_EXPECTED: dict[str, dict[str, str | None]] = {
    # 02 Dec ≤ md or md ≤ 03 Jan: 2 Dec and 31 Dec and 3 Jan; not 1 Dec or 4 Jan
    "bday_wrap": dict.fromkeys(["b_dec02", "b_dec31", "b_jan03"]),
    # today = 30 Dec, +5d = 2026-01-04: 30 Dec … 4 Jan
    "bday_next5": dict.fromkeys(["b_dec31", "b_jan03", "b_jan04"]),
    # the complement keeps customers with no birth date
    "not_bday_wrap": dict.fromkeys(sorted(EVERYONE - {"b_dec02", "b_dec31", "b_jan03"})),
    # 2025 is not a leap year: 29 Feb counts as 1 Mar
    "mar01_nonleap": dict.fromkeys(["b_feb29", "b_mar01"]),
    "feb28_nonleap": dict.fromkeys(["b_feb28"]),
    "winter_months": dict.fromkeys(["b_dec01", "b_dec02", "b_dec31", "b_jan03", "b_jan04"]),
    # the first listed segment holding a customer takes them
    "prio_wrap_first": {
        "b_dec02": "bday_wrap",
        "b_dec31": "bday_wrap",
        "b_jan03": "bday_wrap",
        "b_dec01": "winter_months",
        "b_jan04": "winter_months",
    },
    "prio_winter_first": dict.fromkeys(["b_dec01", "b_dec02", "b_dec31", "b_jan03", "b_jan04"], "winter_months"),
    # rules filter the priority base (b_dec02, b_dec31 live in Omsk, b_jan03 has no city)
    "prio_filtered": {"b_dec01": "winter_months", "b_jan04": "winter_months"},
    # md5("xmas-2025:b_jan03") = 01c88b21… → 29920033 / 2^32 × 100 = 0.697 (control: [0, 10))
    # md5("xmas-2025:b_dec31") = 70ece692… → 1894573714 / 2^32 × 100 = 44.111
    # md5("xmas-2025:b_dec02") = fe371d8d… → 4265024909 / 2^32 × 100 = 99.303
    "wrap_control": {"b_jan03": "control", "b_dec31": "treatment", "b_dec02": "treatment"},
    # a: [0, 40), b: [40, 90), c: [90, 100)
    "wrap_abc": {"b_jan03": "a", "b_dec31": "b", "b_dec02": "c"},
    "wrap_by_city": {"b_dec02": "Omsk", "b_dec31": "Omsk", "b_jan03": "none"},
    # (winter ∪ 1 Mar) ∩ winter ∩ next5 − wrap = {b_jan04}
    "set_ops": {"b_jan04": None},
}

MAR_SEGMENTS = """
key: feb29_leap
rules: {field: birth_date, op: "=", value: "02-29", ignore_year: true}
---
key: mar01_leap
rules: {field: birth_date, op: "=", value: "03-01", ignore_year: true}
---
key: end_feb_leap
rules: {field: birth_date, op: between, value: ["02-28", "03-01"], ignore_year: true}
---
key: reg_since_90d
rules: {field: registered_at, op: ">=", value: -90d}
---
key: reg_before_90d
rules: {field: registered_at, op: "<", value: -90d}
---
key: reg_on_90d
rules: {field: registered_at, op: "=", value: -90d}
---
key: reg_since_3m
rules: {field: registered_at, op: ">=", value: -3M}
---
key: bought_1m
rules: {purchase: {}, within: 1M, count: {">=": 1}}
---
key: bought_30d
rules: {purchase: {}, within: 30d, count: {">=": 1}}
---
key: bought_3m
rules: {purchase: {}, within: 3M, count: {">=": 1}}
---
key: no_order_90d
rules: {purchase: {}, within: 90d, count: {"=": 0}}
---
key: visit_1d
rules: {event: site_visit, within: 1d, count: {">=": 1}}
---
key: visit_24h
rules: {event: {type: [site_visit], channel: web}, within: 24h, count: {">=": 1}}
---
key: visit_2d
rules: {event: site_visit, within: 2d, distinct_days: {"=": 1}}
---
key: tea_orders
rules: {purchase: {category: Tea}, within: 1M, count: {"=": 1}}
---
key: tea_amount
rules: {purchase: {category: [Tea]}, within: 1M, sum_amount: {"=": 250}}
---
key: order_amount
rules: {purchase: {}, within: 1M, sum_amount: {"=": 1000}}
---
key: tea_quantity_any_status
rules: {purchase: {category: Tea, status: [completed, cancelled]}, within: 1M, sum_quantity: {"=": 6}}
---
key: two_categories
rules: {purchase: {channel: app}, within: 1M, distinct_categories: {"=": 2}}
---
key: opened_30d
rules: {message: {channel: email, action: opened}, within: 30d, count: {">=": 1}}
---
key: sent_30d
rules: {message: {channel: email}, within: 30d, count: {">=": 1}}
---
key: clicked_30d
rules: {message: {action: clicked}, within: 30d, count: {">=": 1}}
---
key: bonus_net
rules: {bonus: {}, within: 1M, sum_points: {"=": 300}}
---
key: bonus_redeemed
rules: {bonus: {sign: redemption}, within: 1M, sum_points: {"<": 0, ">=": -200}}
---
key: bonus_accrual_once
rules: {bonus: {sign: accrual, reason: purchase}, within: 1M, count: {"=": 1}}
"""

MAR_EXPECTED: dict[str, dict[str, str | None]] = {
    # 2024 is a leap year: 29 Feb is itself
    "feb29_leap": {"b_feb29": None},
    "mar01_leap": {"b_mar01": None},
    "end_feb_leap": dict.fromkeys(["b_feb28", "b_feb29", "b_mar01"]),
    # D − 90 days = 2024-01-01; the timestamp 2024-01-01 23:30 is compared by its date
    "reg_since_90d": {"r_jan01": None},
    "reg_before_90d": dict.fromkeys(sorted(EXISTING_MAR - {"r_jan01"})),
    "reg_on_90d": {"r_jan01": None},
    # D − 3 months = 2023-12-31
    "reg_since_3m": dict.fromkeys(["r_dec31", "r_jan01"]),
    # 1M as of 2024-03-31: [2024-03-01 00:00, 2024-04-01 00:00)
    "bought_1m": dict.fromkeys(["l_mix", "o_mar01"]),
    # 30d: [2024-03-02 00:00, …): the order of 1 March 00:00 is out
    "bought_30d": {"l_mix": None},
    # 3M: [2024-01-01 00:00, …)
    "bought_3m": dict.fromkeys(["l_mix", "o_feb29", "o_jan01", "o_mar01"]),
    # 90d: [2024-01-02 00:00, …); late_reg does not exist yet
    "no_order_90d": dict.fromkeys(sorted(EXISTING_MAR - {"l_mix", "o_feb29", "o_mar01"})),
    # 1d is the as-of day: 00:00:00 and 23:59:59 count, the next midnight does not
    "visit_1d": dict.fromkeys(["e_late", "e_mid"]),
    "visit_24h": dict.fromkeys(["e_late", "e_mid"]),
    # 2d: 30 and 31 March; each customer visited on one day of them
    "visit_2d": dict.fromkeys(["e_late", "e_mid", "e_prev"]),
    # L1 has two tea lines: one order; L2 is cancelled
    "tea_orders": {"l_mix": None},
    # 2 × 100 + 1 × 50 of the tea lines, not the order's 1000
    "tea_amount": {"l_mix": None},
    "order_amount": {"l_mix": None},
    # 2 + 1 (L1) + 3 (L2, cancelled, included by status)
    "tea_quantity_any_status": {"l_mix": None},
    "two_categories": {"l_mix": None},
    # the open counts at its own time (20 March); the send (10 Feb) is outside 30 days
    "opened_30d": {"m_open": None},
    "sent_30d": {},
    # the click is after the as-of day: hidden
    "clicked_30d": {},
    "bonus_net": {"k_bonus": None},
    "bonus_redeemed": {"k_bonus": None},
    "bonus_accrual_once": {"k_bonus": None},
}

CASES = {DEC: (DEC_SEGMENTS, DEC_EXPECTED), MAR: (MAR_SEGMENTS, MAR_EXPECTED)}


# --- runs --------------------------------------------------------------------------------------------


def engine_available() -> bool:
    return importlib.util.find_spec("acrm_pipelines.segments.evaluate") is not None


@pytest.fixture(scope="module")
def outcomes(
    landing, tmp_path_factory, run_pipeline, make_settings
) -> dict[tuple[date, str], dict[str, dict[str, str | None] | Exception]]:
    """(as_of, "reference" | "engine") → segment key → {customer_id: arm}, one pipeline run per as-of date."""
    out: dict[tuple[date, str], dict[str, dict[str, str | None] | Exception]] = {}
    for as_of, (text, expected) in CASES.items():
        tmp = tmp_path_factory.mktemp(f"cases_{as_of:%Y%m%d}")
        (tmp / "segments").mkdir()
        settings = dataclasses.replace(make_settings(tmp, landing), segments_dir=tmp / "empty_segments")
        settings.segments_dir.mkdir()
        run_pipeline(settings, as_of.isoformat())
        (tmp / "segments" / "cases.yaml").write_text(text)
        segment_set = load_segments([tmp / "segments"], load_catalogue(settings.duckdb_path))
        assert set(segment_set.definitions) == set(expected)
        segments = {key: segment_set[key] for key in segment_set.definitions}
        with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
            frames = read_marts(con)
            out[(as_of, "reference")] = {k: reference_members(frames, segments, k, as_of) for k in segments}
            if engine_available():
                out[(as_of, "engine")] = {k: engine_members(con, segment_set, k, as_of) for k in segments}
    return out


def engine_members(con, segment_set: SegmentSet, key: str, as_of: date) -> dict[str, str | None] | Exception:
    """The engine's members and arms of one segment (evaluated with only what it needs), or its error."""
    from acrm_pipelines.segments.evaluate import evaluate

    needed = segment_set.closure([key])
    subset = SegmentSet({k: segment_set.definitions[k] for k in needed}, needed)
    segment = segment_set[key]
    try:
        result = evaluate(con, subset, as_of)
        arms = result.arms(key) if segment.arms or segment.split is not None else {}
        return {c: arms.get(c) for c in result.members(key)}
    except Exception as err:  # reported by the test of this segment only
        return err


@pytest.mark.parametrize("impl", ["reference", "engine"])
@pytest.mark.parametrize(
    ("as_of", "key"),
    [pytest.param(as_of, key, id=f"{as_of}-{key}") for as_of, (_, expected) in CASES.items() for key in expected],
)
def test_hand_computed_membership(outcomes, impl: str, as_of: date, key: str) -> None:
    if impl == "engine" and not engine_available():
        pytest.skip("acrm_pipelines.segments.evaluate does not exist yet")
    text, expected = CASES[as_of]
    got = outcomes[(as_of, impl)][key]
    if isinstance(got, Exception):
        raise got
    definition = next(d for d in yaml.safe_load_all(text) if d["key"] == key)
    assert got == expected[key], (
        f"{impl}, as of {as_of}, segment:\n{yaml.safe_dump(definition, sort_keys=False)}"
        f"missing: {sorted(set(expected[key]) - set(got))}, extra: {sorted(set(got) - set(expected[key]))}, "
        f"arms differ: {sorted(c for c in set(got) & set(expected[key]) if got[c] != expected[key][c])}"
    )
