"""Hostile definitions: every one is refused at validation with file:line and field, never a crash later.

Deep nesting (the reader, pydantic and the compiler recurse), windows and relative dates that overflow the
calendar when evaluated, split weights that are not finite positive numbers, and splits on personal fields.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from acrm_pipelines.exports.validate import load_exports
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.segments.validate import SegmentSet, load_segments
from acrm_pipelines.yaml_specs import MAX_DEPTH, DefinitionErrors

TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of mappings and lists (the limit; see docs/segments.md)"
WINDOW_LIMITS = "(the limits: 876,000h, 36,600d, 5,228w, 1,200M, 100y)"
DATE_LIMITS = "(the limits: 36,600d, 5,228w, 1,200M, 100y)"
WEIGHT = (
    "an arm weight must be a number above 0 and at most 1,000,000 (not .inf or .nan); "
    "weights are relative: {a: 1, b: 3} is 25/75"
)
PERSONAL = "is a personal field: splitting on it would write every value into run metadata"


def write(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "a.yaml").write_text(text)
    return folder


def errors_of(tmp_path: Path, text: str) -> list[str]:
    folder = write(tmp_path / "segments", text)
    with pytest.raises(DefinitionErrors) as info:
        load_segments([folder], load_catalogue(), root=folder)
    return [str(e) for e in info.value.errors]


def loads(tmp_path: Path, text: str) -> SegmentSet:
    folder = write(tmp_path / "segments", text)
    return load_segments([folder], load_catalogue(), root=folder)


# --- 1. nesting ---------------------------------------------------------------------------------------------
# Levels: the document 1, the value of `rules` 2, the value of the k-th `not` k + 2. The node at level 33
# is then the key of the mapping under the 30th `not`, and its path is that mapping's.


def nested_not(n: int) -> str:
    return "key: a\nrules: " + "{not: " * n + "{field: city, op: is_null}" + "}" * n + "\n"


def nested_all_any(n: int) -> str:
    groups = "".join("{all: [" if i % 2 == 0 else "{any: [" for i in range(n))
    return "key: a\nrules: " + groups + "{field: city, op: is_null}" + "]}" * n + "\n"


@pytest.mark.parametrize("n", [200, 5000])
def test_deeply_nested_not_is_one_error_not_a_recursion_error(tmp_path: Path, n: int) -> None:
    assert errors_of(tmp_path, nested_not(n)) == [f"a.yaml:2: rules{'.not' * 30}: {TOO_DEEP}"]


@pytest.mark.parametrize("n", [200, 5000])
def test_deeply_nested_all_any_is_one_error(tmp_path: Path, n: int) -> None:
    # Each group is two levels (its mapping, its list): level 33 is the key of the 16th group's mapping.
    path = "".join(".all[0]" if i % 2 == 0 else ".any[0]" for i in range(15))
    assert errors_of(tmp_path, nested_all_any(n)) == [f"a.yaml:2: rules{path}: {TOO_DEEP}"]


@pytest.mark.parametrize("n", [200, 5000])
def test_deeply_nested_lists_and_maps_anywhere(tmp_path: Path, n: int) -> None:
    text = "key: a\nrules: {field: city, op: is_null}\ntitle: " + "[" * n + "]" * n + "\n"
    assert errors_of(tmp_path, text) == [f"a.yaml:3: title{'[0]' * 31}: {TOO_DEEP}"]
    text = "key: a\nrules: {field: city, op: is_null}\ntitle: " + "{x: " * n + "1" + "}" * n + "\n"
    assert errors_of(tmp_path, text) == [f"a.yaml:3: title{'.x' * 30}: {TOO_DEEP}"]


def test_block_style_nesting_names_the_line(tmp_path: Path) -> None:
    # Line 3 + k holds the (k+1)-th `not:`; the key at level 33 (under the 30th not) is on line 33.
    text = "key: a\nrules:\n" + "".join("  " * (i + 1) + "not:\n" for i in range(200))
    text += "  " * 201 + "{field: city, op: is_null}\n"
    assert errors_of(tmp_path, text) == [f"a.yaml:33: rules{'.not' * 30}: {TOO_DEEP}"]


def test_the_other_files_are_still_checked(tmp_path: Path) -> None:
    folder = tmp_path / "segments"
    write(folder, nested_not(5000))
    (folder / "b.yaml").write_text("key: b\nrules: {field: cty, op: is_null}\n")
    with pytest.raises(DefinitionErrors) as info:
        load_segments([folder], load_catalogue(), root=folder)
    assert [(e.file, e.line, e.field) for e in info.value.errors] == [
        ("a.yaml", 2, "rules" + ".not" * 30),
        ("b.yaml", 2, "rules.field"),
    ]


def test_the_limit_itself_is_accepted_and_evaluates(tmp_path: Path, make_marts) -> None:
    # 29 nots: the leaf's scalars are at level 32 exactly; one more not is refused.
    assert errors_of(tmp_path, nested_not(30)) == [f"a.yaml:2: rules{'.not' * 30}: {TOO_DEEP}"]
    segments = loads(tmp_path, nested_not(29) + "---\n" + nested_all_any(14).replace("key: a", "key: b"))
    con = make_marts(tmp_path / "db.duckdb", "SELECT * FROM (VALUES ('c1', NULL), ('c2', 'Oslo')) t(customer_id, city)")
    result = evaluate(con, segments, date(2024, 1, 1))
    assert result.members("a") == ["c2"]  # 29 nots of "city is null"
    assert result.members("b") == ["c1"]


def test_deep_export_files_are_refused_too(tmp_path: Path, segment_set) -> None:
    segments = segment_set(tmp_path, "key: base\nrules: {field: city, op: is_null}\n")
    folder = write(tmp_path / "exports", "key: e\nsegment: base\nfields: " + "{x: " * 5000 + "1" + "}" * 5000 + "\n")
    with pytest.raises(DefinitionErrors) as info:
        load_exports([folder], segments, load_catalogue(), root=folder)
    assert [str(e) for e in info.value.errors] == [f"a.yaml:3: fields{'.x' * 30}: {TOO_DEEP}"]


# --- 2. windows and relative dates --------------------------------------------------------------------------

LARGEST = {"h": 876_000, "d": 36_600, "w": 5_228, "M": 1_200, "y": 100}


def behaviour(window: str) -> str:
    return f"key: a\nrules: {{event: site_visit, within: {window}, count: {{'>=': 1}}}}\n"


@pytest.mark.parametrize("unit", list(LARGEST))
def test_window_bound_edges(tmp_path: Path, unit: str) -> None:
    n = LARGEST[unit]
    assert loads(tmp_path, behaviour(f"{n}{unit}"))["a"].rules.within.n == n
    assert errors_of(tmp_path, behaviour(f"{n + 1}{unit}")) == [
        f"a.yaml:2: rules.within: window {n + 1}{unit}: longer than 100 years {WINDOW_LIMITS}"
    ]


@pytest.mark.parametrize(
    ("window", "shown"),
    [("99999y", "99999y"), ("9999999d", "9999999d"), ("99999M", "99999M"), ("{n: 101, unit: y}", "101y")],
)
def test_windows_that_overflowed_at_run_time(tmp_path: Path, window: str, shown: str) -> None:
    assert errors_of(tmp_path, behaviour(window)) == [
        f"a.yaml:2: rules.within: window {shown}: longer than 100 years {WINDOW_LIMITS}"
    ]


def test_a_zero_window_in_mapping_form(tmp_path: Path) -> None:
    assert errors_of(tmp_path, behaviour("{n: 0, unit: d}")) == [
        "a.yaml:2: rules.within.n: Input should be greater than or equal to 1"
    ]


def relative(value: str, field: str = "birth_date", op: str = "'>'") -> str:
    return f"key: a\nrules: {{field: {field}, op: {op}, value: {value}}}\n"


@pytest.mark.parametrize("unit", ["d", "w", "M", "y"])
@pytest.mark.parametrize("sign", ["-", "+"])
def test_relative_date_bound_edges(tmp_path: Path, unit: str, sign: str) -> None:
    n = LARGEST[unit]
    loads(tmp_path, relative(f"'{sign}{n}{unit}'"))
    assert errors_of(tmp_path, relative(f"'{sign}{n + 1}{unit}'")) == [
        f"a.yaml:2: rules.value: relative date '{sign}{n + 1}{unit}' is more than 100 years from the as-of date "
        f"{DATE_LIMITS}"
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (relative("['-99999y', today]", op="between"), "-99999y"),
        (relative("[today, '+101y']", op="between").replace("}}\n", ", ignore_year: true}}\n"), "+101y"),
        (relative("'-99999M'", field="last_visit_at", op="'>='"), "-99999M"),
        (relative("'+99999d'", field="custom_anniversary", op="'='"), "+99999d"),  # type unknown until loaded
    ],
)
def test_relative_dates_too_far_everywhere(tmp_path: Path, text: str, value: str) -> None:
    assert errors_of(tmp_path, text) == [
        f"a.yaml:2: rules.value: relative date {value!r} is more than 100 years from the as-of date {DATE_LIMITS}"
    ]


def test_frequency_cap_window_bound(tmp_path: Path, segment_set) -> None:
    segments = segment_set(tmp_path, "key: base\nrules: {field: city, op: is_null}\n")
    head = "key: e\nsegment: base\nchannel: email\ncampaign: c\ndestination: {type: csv}\n"
    folder = write(tmp_path / "exports", head + "frequency_cap: {max: 1, per: 36601d}\n")
    with pytest.raises(DefinitionErrors) as info:
        load_exports([folder], segments, load_catalogue(), root=folder)
    assert [str(e) for e in info.value.errors] == [
        f"a.yaml:6: frequency_cap.per: window 36601d: longer than 100 years {WINDOW_LIMITS}"
    ]
    write(folder, head + "frequency_cap: {max: 1, per: 36600d}\n")
    assert len(load_exports([folder], segments, load_catalogue(), root=folder)) == 1


@pytest.mark.parametrize("as_of", [date(1900, 1, 1), date(2200, 12, 31)])
def test_the_largest_values_evaluate_on_any_date_from_1900_to_2200(tmp_path: Path, as_of: date, make_marts) -> None:
    windows = [f"{n}{unit}" for unit, n in LARGEST.items()]
    text = "".join(f"---\nkey: w_{w.lower()}\n" + behaviour(w).removeprefix("key: a\n") for w in windows)
    for i, value in enumerate(f"{sign}{LARGEST[u]}{u}" for u in "dwMy" for sign in "-+"):
        text += f"---\nkey: r{i}\n" + relative(f"'{value}'", op="'>='").removeprefix("key: a\n")
        text += f"---\nkey: y{i}\n" + relative(f"[today, '{value}']", op="between").replace(
            "}}\n", ", ignore_year: true}}\n"
        ).removeprefix("key: a\n")
    segments = loads(tmp_path, text)
    assert len(segments) == 5 + 8 + 8
    con = make_marts(
        tmp_path / "db.duckdb",
        "SELECT 'c1' AS customer_id, DATE '1850-06-15' AS birth_date, TIMESTAMP '1850-06-15 12:00' AS last_visit_at",
    )
    con.execute("INSERT INTO marts.fct_events VALUES ('c1', TIMESTAMP '1850-06-15 12:00', 'site_visit', 'web', NULL)")
    result = evaluate(con, segments, as_of)  # no OverflowError / ValueError from the calendar
    # 1850 is inside every (about) 100-year window back from 1900, and before all of them from 2200.
    assert [result.size(f"w_{w.lower()}") for w in windows] == [int(as_of.year == 1900)] * 5


# --- 3. split weights ---------------------------------------------------------------------------------------


def arms(a: str, b: str = "1") -> str:
    return f"key: a\nrules: {{field: city, op: is_null}}\nsplit: {{salt: s, arms: {{a: {a}, b: {b}}}}}\n"


@pytest.mark.parametrize("weight", [".inf", "-.inf", ".nan", "1e308", "1.0e+308", "-1", "0", "0.0", "1000000.5"])
def test_bad_weights(tmp_path: Path, weight: str) -> None:
    assert errors_of(tmp_path, arms(weight)) == [f"a.yaml:3: split.arms.a: {WEIGHT}"]


def test_weights_whose_sum_overflows(tmp_path: Path) -> None:
    assert sum([1e308, 1e308]) == float("inf")
    assert errors_of(tmp_path, arms("1.0e+308", "1.0e+308")) == [
        f"a.yaml:3: split.arms.a: {WEIGHT}",
        f"a.yaml:3: split.arms.b: {WEIGHT}",
    ]


def test_weight_edges_are_accepted(tmp_path: Path) -> None:
    segment = loads(tmp_path, arms("1000000", "0.001"))["a"]
    assert segment.split.arm_weights() == {"a": 1_000_000.0, "b": 0.001}


@pytest.mark.parametrize("control", [".inf", ".nan", "0", "100"])
def test_bad_control_percentages(tmp_path: Path, control: str) -> None:
    text = f"key: a\nrules: {{field: city, op: is_null}}\nsplit: {{salt: s, control: {control}}}\n"
    assert [e.split(": ")[:2] for e in errors_of(tmp_path, text)] == [["a.yaml:3", "split.control"]]


# --- 4. personal fields -------------------------------------------------------------------------------------


def test_the_catalogue_knows_the_personal_columns() -> None:
    catalogue = load_catalogue()
    assert catalogue.personal == {"first_name", "last_name", "email", "phone", "birth_date"}
    assert catalogue.is_personal("email") and not catalogue.is_personal("city")


@pytest.mark.parametrize("field", ["first_name", "last_name", "email", "phone", "birth_date"])
def test_no_split_by_a_personal_field(tmp_path: Path, field: str) -> None:
    text = f"key: a\nrules: {{field: {field}, op: is_not_null}}\nsplit:\n  by_field: {field}\n"
    assert errors_of(tmp_path, text) == [f"a.yaml:4: split.by_field: {field} {PERSONAL}"]


def test_rules_may_still_filter_on_personal_fields(tmp_path: Path) -> None:
    segments = loads(
        tmp_path,
        "key: a\nrules:\n  all:\n    - {field: email, op: is_not_null}\n"
        "    - {field: phone, op: contains, value: '+7'}\nsplit: {by_field: city}\n",
    )
    assert segments["a"].split.by_field == "city"
