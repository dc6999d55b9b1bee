"""Segment validation: every error names the file, the line and the field; all errors come at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import load_segments
from acrm_pipelines.settings import REPO_ROOT
from acrm_pipelines.yaml_specs import DefinitionErrors

GOOD = """\
key: base
rules: {field: total_amount, op: ">=", value: 100}
"""


def errors_of(tmp_path: Path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DefinitionErrors) as info:
        load_segments([tmp_path], load_catalogue(), root=tmp_path)
    return [str(e) for e in info.value.errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "key: a\nrules:\n  all:\n    - {field: total_amount, op: '>=', value: 1}\n"
            "    - {field: city, op: like, value: x}\n",
            "a.yaml:5: rules.all[1].op: expected one of =, !=, <, <=, >, >=, between, in, not_in, is_null, "
            "is_not_null, contains, has_tag, got 'like'",
        ),
        (
            "key: a\nrules: {field: cty, op: '=', value: x}\n",
            "a.yaml:2: rules.field: unknown feature 'cty' (did you mean: city",
        ),
        ("key: a\nrules: {field: total_amount, op: '>=', value: lots}\n", "a.yaml:2: rules.value: expected a number"),
        (
            "key: a\nrules: {field: consent_email, op: '=', value: 'yes'}\n",
            "a.yaml:2: rules.value: expected true or false",
        ),
        ("key: a\nrules: {field: city, op: '=', value: 42}\n", "a.yaml:2: rules.value: expected text for city, got 42"),
        ("key: a\nrules: {field: birth_date, op: '>', value: yesterday}\n", "a.yaml:2: rules.value: expected a date"),
        (
            "key: a\nrules: {field: city, op: has_tag, value: x}\n",
            "a.yaml:2: rules.op: op has_tag does not apply to city",
        ),
        (
            "key: a\nrules:\n  not:\n    {event: site_visit, within: 6x, count: {'>=': 1}}\n",
            "a.yaml:4: rules.not.within: window '6x'",
        ),
        (
            "key: a\nrules: {purchase: {}, within: 3d, sum_points: {'>': 1}}\n",
            "a.yaml:2: rules: metric sum_points does not apply to purchase",
        ),
        ("key: a\ncolour: red\nrules: {field: city, op: is_null}\n", "a.yaml:2: colour: unknown field"),
        ("key: a\nrules: {field: city, op: between, value: [a]}\n", "a.yaml:2: rules: op between needs a list of two"),
        ("key: a\nfrom: {union: [ghost]}\n", "a.yaml:2: from.union[0]: unknown segment 'ghost'"),
        (
            "key: Bad-Key\nrules: {field: city, op: is_null}\n",
            "a.yaml:1: key: 'Bad-Key' is not allowed: use 1 to 63 lower-case letters a-z, digits and _, starting with",
        ),
        (
            "key: a\nrules: {field: city, op: is_null}\nrules: {field: city, op: is_null}\n",
            "a.yaml:3: rules: duplicate key",
        ),
        (
            "key: a\nrules: &x {field: city, op: is_null}\n",
            "a.yaml:2: invalid YAML: anchors and aliases are not allowed",
        ),
        (
            "key: !!python/object:os.system a\n",
            "a.yaml:1: invalid YAML: tag tag:yaml.org,2002:python/object:os.system is not allowed",
        ),
        ("key: a\nrules: [unclosed\n", "a.yaml:2: invalid YAML: the list '[' that starts on this line is not closed"),
        (
            "key: a\nsplit: {control: 10%}\nrules: {field: city, op: is_null}\n",
            "a.yaml:2: split: a random split needs a salt",
        ),
        (
            "key: a\nrules: {field: city, op: is_null}\nrefresh: 24h\n",
            "a.yaml:3: refresh: expected a number of hours from 1h to 23h (e.g. 4h), got '24h'",
        ),
        ("key: a\nrules: {field: total_amount, op: '>', value: .inf}\n", "a.yaml:2: rules: a value must be a finite"),
        ("key: a\nrules: {event: site_visit, within: 6d, count: {'>=': .nan}}\n", "a.yaml:2: rules.count"),
        (
            "key: a\ntype: static\nrules: {field: city, op: is_null}\nrefresh: 4h\n",
            "a.yaml:1: refresh is for active dynamic segments",
        ),
    ],
)
def test_one_error_with_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    errors = errors_of(tmp_path, {"a.yaml": text})
    assert any(e.startswith(expected) for e in errors), errors


def test_all_errors_of_all_files_at_once(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        {
            "a.yaml": GOOD + "---\nkey: loop_a\nfrom: {union: [loop_b]}\n---\nkey: loop_b\npriority: [base, loop_a]\n",
            "b.yaml": "key: base\nrules: {field: city, op: is_null}\n---\nkey: c\nrules: {field: nope, op: is_null}\n",
        },
    )
    assert errors == [
        "a.yaml:5: from: cycle: loop_a -> loop_b -> loop_a",
        "b.yaml:1: key: duplicate segment key 'base' (first defined in a.yaml:1)",
        "b.yaml:5: rules.field: unknown feature 'nope' (see docs/features.md)",
    ]


def test_size_cap(tmp_path: Path) -> None:
    text = "# " + "x" * 1_100_000 + "\n" + GOOD
    errors = errors_of(tmp_path, {"big.yaml": text})
    assert errors == [f"big.yaml:1: file is {len(text.encode()):,} bytes; the limit is 1,000,000"]


def test_example_segments_are_valid() -> None:
    segments = load_segments([REPO_ROOT / "segments"], load_catalogue(), root=REPO_ROOT)
    kinds = {k: segments[k] for k in segments.order}
    assert any(s.priority for s in kinds.values())
    assert any(s.split and s.split.control for s in kinds.values())
    assert any(s.type == "static" for s in kinds.values()) and any(not s.active for s in kinds.values())


def test_cli_validate_exit_code_and_stderr(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("key: a\nrules: {field: cty, op: '=', value: x}\n")
    exe = Path(sys.executable).parent / "acrm"
    done = subprocess.run(
        [str(exe), "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "ACRM_DUCKDB_PATH": str(tmp_path / "none.duckdb")},
    )
    assert done.returncode == 1
    assert "bad.yaml:2: rules.field: unknown feature 'cty'" in done.stderr
    ok = subprocess.run(
        [str(exe), "validate"],
        capture_output=True,
        text=True,
        env={**os.environ, "ACRM_DUCKDB_PATH": str(tmp_path / "none.duckdb")},
    )
    assert ok.returncode == 0, ok.stderr
    assert "segments valid" in ok.stdout
