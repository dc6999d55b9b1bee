"""Validation errors always point at the file (issue 12, items 9–13): each class of mistake is reported as
`file:line: field: message` in plain words, with a did-you-mean where a typo is likely, and every error of a
file comes out in one run, whatever else is wrong in it.

Most tests call `load_segments` (what `acrm run` and Dagster's definitions load use); the project-level ones run
`acrm validate` itself, with the settings pointing at folders in tmp_path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import load_segments
from acrm_pipelines.yaml_specs import DefinitionErrors

ACRM = Path(sys.executable).parent / "acrm"


def errors_of(tmp_path: Path, files: dict[str, str]) -> list[str]:
    folder = tmp_path / "segments"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(DefinitionErrors) as info:
        load_segments([folder], load_catalogue(), root=folder)
    return [str(e) for e in info.value.errors]


def project(tmp_path: Path, segments: dict[str, str], exports: dict[str, str] | None = None) -> dict[str, str]:
    """A project in tmp_path (segments/, exports/, no DuckDB file unless one is written there): its settings."""
    for folder, files in (("segments", segments), ("exports", exports or {})):
        (tmp_path / folder).mkdir(exist_ok=True)
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
    return {
        "ACRM_SEGMENTS_DIR": str(tmp_path / "segments"),
        "ACRM_EXPORTS_DIR": str(tmp_path / "exports"),
        "ACRM_JOURNEYS_DIR": str(tmp_path / "no_journeys"),
        "ACRM_DUCKDB_PATH": str(tmp_path / "acrm.duckdb"),
        "ACRM_OUTBOX_DIR": str(tmp_path / "outbox"),
    }


def validate(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ACRM), "validate", *args], capture_output=True, text=True, env={**os.environ, **env}, cwd=cwd
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


# --- 9. an unquoted invalid date --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2024-13-45", "'2024-13-45' is not a date: there is no month 13 (months are 01 to 12)"),
        ("2024-02-30", "'2024-02-30' is not a date: February 2024 has 29 days"),
        ("2023-02-29", "'2023-02-29' is not a date: February 2023 has 28 days"),
        ("2024-04-31", "'2024-04-31' is not a date: April 2024 has 30 days"),
    ],
)
def test_an_unquoted_invalid_date_is_an_error_at_its_line_and_field(tmp_path: Path, value: str, message: str) -> None:
    text = "key: a\nrules:\n  all:\n    - {field: city, op: is_null}\n"
    text += f"    - {{field: birth_date, op: '>', value: {value}}}\n"
    # A second file is still read: the date no longer stops the whole validation.
    errors = errors_of(tmp_path, {"a.yaml": text, "b.yaml": "key: b\nrules: {field: cty, op: is_null}\n"})
    assert errors == [
        f"a.yaml:5: rules.all[1].value: {message}",
        "b.yaml:2: rules.field: unknown feature 'cty' (did you mean: city, country)",
    ]


def test_an_invalid_date_in_a_list_and_a_valid_unquoted_date(tmp_path: Path) -> None:
    text = "key: a\nrules: {field: last_visit_at, op: between, value: [2024-01-01, 2024-13-01]}\n"
    assert errors_of(tmp_path, {"a.yaml": text}) == [
        "a.yaml:2: rules.value: '2024-13-01' is not a date: there is no month 13 (months are 01 to 12)"
    ]
    # An unquoted valid date is what docs/segments.md shows: it is read as the date it spells.
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.yaml").write_text("key: a\nrules: {field: birth_date, op: '>=', value: 2024-03-01}\n")
    segments = load_segments([tmp_path / "ok"], load_catalogue())
    assert segments["a"].rules.value == "2024-03-01"


def test_a_date_anywhere_else_is_text_not_a_crash(tmp_path: Path) -> None:
    text = "key: a\ntitle: 2024-13-45\ndescription: 2024-02-30 10:00:00\nrules: {field: city, op: is_null}\n"
    (tmp_path / "a.yaml").write_text(text)
    segment = load_segments([tmp_path], load_catalogue())["a"]
    assert (segment.title, segment.description) == ("2024-13-45", "2024-02-30 10:00:00")


def test_values_pyyaml_cannot_construct_are_errors_at_their_line(tmp_path: Path) -> None:
    # The same class as the date: a value PyYAML fails on (here a list used as a key) is an error of its
    # document, and the file's other documents are still checked.
    text = "key: a\nrules: {[x]: 1}\n---\nkey: b\nrules: {field: cty, op: is_null}\n"
    assert errors_of(tmp_path, {"a.yaml": text}) == [
        "a.yaml:2: a key must be a name, not a list or a mapping",
        "a.yaml:5: rules.field: unknown feature 'cty' (did you mean: city, country)",
    ]


def test_acrm_validate_names_the_file_of_an_invalid_date(tmp_path: Path) -> None:
    env = project(tmp_path, {"a.yaml": "key: a\nrules: {field: birth_date, op: '>', value: 2024-13-45}\n"})
    done = validate(env)
    assert done.returncode == 1
    assert f"{tmp_path}/segments/a.yaml:2: rules.value: '2024-13-45' is not a date: there is no month 13" in done.stderr
    assert "month must be in 1..12" not in done.stderr


# --- 10. a structural error does not hide the other errors ----------------------------------------------------


def test_a_structural_error_does_not_hide_type_errors(tmp_path: Path) -> None:
    text = (
        "key: a\n"
        "colour: red\n"  # structural: the whole segment fails its model
        "rules:\n"
        "  all:\n"
        "    - {field: total_amount, op: '>=', value: lots}\n"  # type error, found on the parts that parse
        "    - {field: cty, op: like, value: x}\n"  # structural (op) and unknown feature in one condition
        "    - {event: site_visit, within: 6x, count: {'>=': 1}}\n"
        "    - not: {field: birth_date, op: '<', value: yesterday}\n"
        "split: {by_field: email}\n"
    )
    assert errors_of(tmp_path, {"a.yaml": text}) == [
        "a.yaml:2: colour: unknown field (allowed here: key, title, description, type, active, rules, from, priority, "
        "split, size_alert, refresh)",
        "a.yaml:5: rules.all[0].value: expected a number for total_amount, got 'lots'",
        "a.yaml:6: rules.all[1].field: unknown feature 'cty' (did you mean: city, country)",
        "a.yaml:6: rules.all[1].op: expected one of =, !=, <, <=, >, >=, between, in, not_in, is_null, is_not_null, "
        "contains, has_tag, got 'like'",
        "a.yaml:7: rules.all[2].within: window '6x': expected a count and a unit, e.g. 12h, 30d, 2w, 3M (months), 1y",
        "a.yaml:8: rules.all[3].not.value: expected a date YYYY-MM-DD or a relative date (today, -90d, +3d, -2w, -3M, "
        "-1y), got 'yesterday'",
        "a.yaml:9: split.by_field: email is a personal field: splitting on it would write every value into run "
        "metadata",
    ]


def test_a_failed_segment_still_exists_for_the_segments_built_from_it(tmp_path: Path) -> None:
    text = "key: base\ntitel: x\nrules: {field: city, op: is_null}\n---\nkey: b\nfrom: {union: [base, bsae]}\n"
    assert errors_of(tmp_path, {"a.yaml": text}) == [
        "a.yaml:2: titel: unknown field (did you mean: title)",
        "a.yaml:6: from.union[1]: unknown segment 'bsae' (did you mean: base)",
    ]


def test_references_and_duplicates_of_a_failed_segment_are_checked(tmp_path: Path) -> None:
    failed = "key: a\nsize_alert: {max_ratio: 0.5}\npriority: [a, ghost]\n"
    errors = errors_of(tmp_path, {"a.yaml": failed, "b.yaml": "key: a\nrules: {field: city, op: is_null}\n"})
    assert errors == [
        "a.yaml:2: size_alert.max_ratio: Input should be greater than 1",
        "a.yaml:3: priority[0]: a segment cannot be built from itself",
        "a.yaml:3: priority[1]: unknown segment 'ghost'",
        "b.yaml:1: key: duplicate segment key 'a' (first defined in a.yaml:1)",
    ]


# --- 11. `acrm validate FILE` in the context of the whole project -----------------------------------------


def test_validate_one_file_in_the_context_of_the_project(tmp_path: Path) -> None:
    env = project(
        tmp_path,
        {
            "one.yml": "key: one\nfrom: {union: [two, three]}\n",
            "two.yml": "key: two\nrules: {field: city, op: is_null}\n",
            "two_again.yml": "key: three\nrules: {field: city, op: is_not_null}\n---\nkey: two\n"
            "rules: {field: city, op: is_null}\n",
            "other.yml": "key: other\nrules: {field: nope, op: is_null}\n",
        },
        {"x.yml": "key: x\nsegment: one\nchannel: email\ncampaign: c\ndestination: {type: csv}\n"},
    )
    # No false "unknown segment": two and three are in other files, which are loaded for context. The error of
    # other.yml is not this file's, but is counted.
    done = validate(env, "segments/one.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "unknown segment" not in done.stderr
    assert "1 segments valid" in done.stdout
    assert "note: 2 error(s) in other files of the project (`acrm validate` lists them)" in done.stderr
    # A key defined twice across files is found from either file.
    duplicate = f"{tmp_path}/segments/two_again.yml:4: key: duplicate segment key 'two' (first defined in "
    duplicate += f"{tmp_path}/segments/two.yml:1)"
    for named in ("segments/two.yml", "segments/two_again.yml"):
        done = validate(env, named, cwd=tmp_path)
        assert done.returncode == 1
        assert lines(done.stderr)[0] == duplicate, done.stderr
    # An export file is validated as an export, against the project's segments.
    done = validate(env, str(tmp_path / "exports" / "x.yml"))
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout) == ["1 exports valid"]


def test_validate_an_export_file_reports_export_errors(tmp_path: Path) -> None:
    export = "key: x\nsegment: one\nchannel: email\ncampaign: c\ndestination: {type: csv}\nfields: {e: no_such}\n"
    env = project(tmp_path, {"one.yml": "key: one\nrules: {field: city, op: is_null}\n"}, {"x.yml": export})
    outside = tmp_path / "new_export.yml"  # outside both folders: recognised as an export by its content
    outside.write_text(export.replace("key: x", "key: y").replace("segment: one", "segment: ghost"))
    done = validate(env, str(tmp_path / "exports" / "x.yml"), str(outside))
    assert done.returncode == 1
    assert lines(done.stderr)[:3] == [
        f"{tmp_path}/exports/x.yml:6: fields.e: unknown feature 'no_such' (see docs/features.md)",
        f"{outside}:2: segment: unknown segment 'ghost'",
        f"{outside}:6: fields.e: unknown feature 'no_such' (see docs/features.md)",
    ]
    assert "needs rules" not in done.stderr


def test_validate_without_paths_checks_exports_even_when_a_segment_fails(tmp_path: Path) -> None:
    env = project(
        tmp_path,
        {"one.yml": "key: one\nrules: {field: cty, op: is_null}\n"},
        {
            "x.yml": "key: x\nsegment: one\nchannel: email\ncampaign: c\ndestination: {type: csv}\n"
            "---\nkey: y\nsegment: onne\nchannel: email\ncampaign: c\ndestination: {type: csv}\n"
        },
    )
    done = validate(env)
    assert done.returncode == 1
    # x names a segment that failed validation: not "unknown" (the segment's own error says what is wrong).
    assert lines(done.stderr)[:3] == [
        f"{tmp_path}/exports/x.yml:8: segment: unknown segment 'onne'",
        f"{tmp_path}/segments/one.yml:2: rules.field: unknown feature 'cty' (did you mean: city, country)",
        "acrm validate: 2 error(s), 0 warning(s)",
    ]


# --- 12. filter values against the loaded data -------------------------------------------------------------


def write_values(db: Path, skip: tuple[str, ...] = ()) -> None:
    """The staging views the check reads, as small tables."""
    tables = {
        "stg_crm__products": "SELECT * FROM (VALUES ('P1', 'Coffee', 'Samovar'), ('P2', 'Green tea', 'Tea Garden')) "
        "t(product_id, category, brand)",
        "stg_crm__orders": "SELECT * FROM (VALUES ('S1', 'web'), ('S2', 'store')) t(store_id, channel)",
        "stg_crm__events": "SELECT * FROM (VALUES ('email_click', 'web'), ('site_visit', 'app')) "
        "t(event_type, channel)",
        "stg_crm__messages": "SELECT * FROM (VALUES ('spring-2026', 'email'), ('birthday', 'sms')) "
        "t(campaign_id, channel)",
        "stg_crm__bonus_transactions": "SELECT * FROM (VALUES ('purchase'), ('birthday')) t(reason)",
    }
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS staging")
        for name, sql in tables.items():
            if name not in skip:
                con.execute(f"CREATE TABLE staging.{name} AS {sql}")


VALUES_SEGMENT = """\
key: a
rules:
  any:
    - {purchase: {category: [Cofee, Green tea], brand: samovar}, within: 3M, count: {">=": 1}}
    - {event: emial_click, within: 6d, count: {">=": 1}}
    - {event: {type: [site_visit, cart_add], channel: ap}, within: 6d, count: {">=": 1}}
    - {message: {channel: [e-mail], campaign_id: sprng-2026}, within: 30d, count: {">=": 1}}
    - {bonus: {reason: [purchase, birthdya]}, within: 1y, sum_points: {">": 0}}
    - {purchase: {store_id: S9, channel: web}, within: 1y, count: {">=": 1}}
"""


def test_filter_values_are_checked_against_the_data(tmp_path: Path) -> None:
    env = project(tmp_path, {"a.yaml": VALUES_SEGMENT})
    write_values(tmp_path / "acrm.duckdb")
    done = validate(env)
    assert done.returncode == 0, done.stderr  # warnings: a value may be there tomorrow
    where = f"{tmp_path}/segments/a.yaml"
    assert lines(done.stderr) == [
        f"{where}:4: rules.any[0].purchase.brand: warning: no brand 'samovar' in the loaded data "
        "(did you mean: Samovar); this value matches nothing",
        f"{where}:4: rules.any[0].purchase.category[0]: warning: no product category 'Cofee' in the loaded data "
        "(did you mean: Coffee); this value matches nothing",
        f"{where}:5: rules.any[1].event: warning: no event type 'emial_click' in the loaded data "
        "(did you mean: email_click); this value matches nothing",
        f"{where}:6: rules.any[2].event.channel: warning: no event channel 'ap' in the loaded data "
        "(did you mean: app); this value matches nothing",
        f"{where}:6: rules.any[2].event.type[1]: warning: no event type 'cart_add' in the loaded data "
        "(the data has: email_click, site_visit); this value matches nothing",
        f"{where}:7: rules.any[3].message.campaign_id: warning: no campaign id 'sprng-2026' in the loaded data "
        "(did you mean: spring-2026); this value matches nothing",
        f"{where}:7: rules.any[3].message.channel[0]: warning: no message channel 'e-mail' in the loaded data "
        "(did you mean: email); this value matches nothing",
        f"{where}:8: rules.any[4].bonus.reason[1]: warning: no bonus reason 'birthdya' in the loaded data "
        "(did you mean: birthday); this value matches nothing",
        f"{where}:9: rules.any[5].purchase.store_id: warning: no store id 'S9' in the loaded data "
        "(the data has: S1, S2); this value matches nothing",
    ]
    assert "8 warning(s)" not in done.stdout and "9 warning(s)" in done.stdout
    assert validate(env, "--strict").returncode == 1


def test_filter_values_not_checked_without_data(tmp_path: Path) -> None:
    env = project(tmp_path, {"a.yaml": VALUES_SEGMENT})
    done = validate(env)
    assert done.returncode == 0, done.stderr
    assert lines(done.stderr) == [
        "note: filter values (bonus reason, brand, campaign id, event channel, event type, message channel, "
        "order channel, product category, store id) were not checked against the data: no DuckDB file at "
        f"{tmp_path}/acrm.duckdb yet (`acrm run --as-of DATE` loads it)"
    ]
    # A table not loaded yet: its values are not checked, the others are.
    write_values(tmp_path / "acrm.duckdb", skip=("stg_crm__messages", "stg_crm__bonus_transactions"))
    done = validate(env)
    assert done.returncode == 0, done.stderr
    assert "note: campaign id values were not checked: staging.stg_crm__messages is not in the DuckDB file yet" in (
        done.stderr
    )
    assert "note: bonus reason values were not checked: staging.stg_crm__bonus_transactions is not in the" in (
        done.stderr
    )
    assert "no product category 'Cofee' in the loaded data (did you mean: Coffee)" in done.stderr
    assert "'e-mail'" not in done.stderr


def test_filter_values_of_the_demo_segments_are_in_the_demo_data(tmp_path: Path) -> None:
    from acrm_pipelines.segments.validate import check_segments
    from acrm_pipelines.segments.values import check_values
    from acrm_pipelines.settings import REPO_ROOT

    db = tmp_path / "acrm.duckdb"
    write_values(db)
    with duckdb.connect(str(db)) as con:
        con.execute("INSERT INTO staging.stg_crm__products VALUES ('P3', 'Chinese tea', 'Jade Dragon')")
        con.execute("INSERT INTO staging.stg_crm__events VALUES ('cart_abandon', 'web')")
    check = check_segments([REPO_ROOT / "segments"], load_catalogue(), root=REPO_ROOT)
    assert check.errors == [] and check.behaviours
    values = check_values(check.behaviours, db)
    assert (values.warnings, values.notes) == ([], [])


# --- 13. suggestions and plain words ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # typos, with a did-you-mean
        (
            "key: a\ntitel: x\nrules: {field: city, op: is_null}\n",
            "a.yaml:2: titel: unknown field (did you mean: title)",
        ),
        (
            "key: a\nrules: {field: city, op: '=>', value: x}\n",
            "a.yaml:2: rules.op: expected one of =, !=, <, <=, >, >=, between, in, not_in, is_null, is_not_null, "
            "contains, has_tag, got '=>' (did you mean: >=)",
        ),
        (
            "key: a\nrules: {field: city, op: '==', value: x}\n",
            "a.yaml:2: rules.op: expected one of =, !=, <, <=, >, >=, between, in, not_in, is_null, is_not_null, "
            "contains, has_tag, got '==' (did you mean: =)",
        ),
        (
            "key: a\nrules: {field: city, op: not in, value: [x]}\n",
            "a.yaml:2: rules.op: expected one of =, !=, <, <=, >, >=, between, in, not_in, is_null, is_not_null, "
            "contains, has_tag, got 'not in' (did you mean: not_in)",
        ),
        (
            "key: a\nrules: {event: site_visit, within: 6d, count: {'=<': 1}}\n",
            "a.yaml:2: rules.count.=<: expected one of =, !=, <, <=, >, >=, got '=<' (did you mean: <=)",
        ),
        (
            "key: a\nrules: {event: site_visit, within: 6d, cuont: {'>=': 1}}\n",
            "a.yaml:2: rules.cuont: unknown field (did you mean: count)",
        ),
        (
            "key: a\nrules: {purchase: {categroy: [Tea]}, within: 6d, count: {'>=': 1}}\n",
            "a.yaml:2: rules.purchase.categroy: unknown field (did you mean: category)",
        ),
        (
            "key: a\nrules: {message: {action: clikced}, within: 6d, count: {'>=': 1}}\n",
            "a.yaml:2: rules.message.action: expected one of sent, delivered, opened, clicked, complained, "
            "unsubscribed, got 'clikced' (did you mean: clicked)",
        ),
        (
            "key: a\nrules: {field: city, op: is_null}\nsplit: {by_feild: city}\n",
            "a.yaml:3: split.by_feild: unknown field (did you mean: by_field)",
        ),
        (
            "key: a\nrules: {field: city, op: is_null}\nsplit: {by_field: cty}\n",
            "a.yaml:3: split.by_field: unknown or list-valued feature 'cty' (did you mean: city, country)",
        ),
        (
            "key: a\npriority: [bsae, base]\n---\nkey: base\nrules: {field: city, op: is_null}\n",
            "a.yaml:2: priority[0]: unknown segment 'bsae' (did you mean: base)",
        ),
        # plain words instead of regexes and pydantic's type names
        (
            "key: Lapsed-VIP\nrules: {field: city, op: is_null}\n",
            "a.yaml:1: key: 'Lapsed-VIP' is not allowed: use 1 to 63 lower-case letters a-z, digits and _, "
            "starting with a letter",
        ),
        (
            "key: a\nrules: {field: city, op: is_null}\nrefresh: 30m\n",
            "a.yaml:3: refresh: expected a number of hours from 1h to 23h (e.g. 4h), got '30m'",
        ),
        (
            "key: a\nrules: {field: city, op: '=', value: {x: 1}}\n",
            "a.yaml:2: rules.value: expected true or false, a number, text or a list [...], got {'x': 1}",
        ),
        (
            "key: a\nactive: maybe\nrules: {field: city, op: is_null}\n",
            "a.yaml:2: active: expected true or false, got 'maybe'",
        ),
        ("key: a\nrules: {all: []}\n", "a.yaml:2: rules.all: give at least 1 item"),
        # plain words instead of YAML parser jargon
        (
            "key: a\ntitle: Spend: 20k+\nrules: {field: city, op: is_null}\n",
            "a.yaml:2: invalid YAML: unexpected ':' here; put a text that contains ': ' in quotes (title: 'a: b'), "
            "and indent a key no further than the keys beside it",
        ),
        (
            "key: a\n  title: x\n",
            "a.yaml:2: invalid YAML: unexpected ':' here; put a text that contains ': ' in quotes (title: 'a: b'), "
            "and indent a key no further than the keys beside it",
        ),
        (
            "key: a\nrules:\n\t{field: city, op: is_null}\n",
            "a.yaml:3: invalid YAML: a tab character; indent with spaces only",
        ),
        (
            'key: a\ntitle: "VIP\nrules: {field: city, op: is_null}\n',
            "a.yaml:2: invalid YAML: the quoted text that starts on this line has no closing quote",
        ),
        (
            "key: a\nrules: {field: city, op: is_null\ntitle: x\n",
            "a.yaml:2: invalid YAML: the mapping '{' that starts on this line is not closed with '}', or its items "
            "are not separated by commas",
        ),
        (
            "key: a\nrules:\n  all:\n    - {field: city, op: is_null}\n   - {field: city, op: is_null}\n",
            "a.yaml:5: invalid YAML: this line is not indented like the lines around it (check its spaces)",
        ),
        (
            "key: a\ntitle: @vip\n",
            "a.yaml:2: invalid YAML: a value cannot start with '@'; put the value in quotes",
        ),
        (
            "key: a\ntitle\nrules: {field: city, op: is_null}\n",
            "a.yaml:2: invalid YAML: expected 'name: value' on this line (the ':' after the name is missing)",
        ),
    ],
)
def test_suggestions_and_plain_words(tmp_path: Path, text: str, expected: str) -> None:
    assert errors_of(tmp_path, {"a.yaml": text}) == [expected]


def test_no_message_shows_a_regex_or_parser_jargon(tmp_path: Path) -> None:
    texts = [
        "key: A\nrules: {field: city, op: is_null}\n",
        "key: a\nrules: {field: city, op: is_null}\nrefresh: 24h\n",
        "key: a\ntitle: a: b\n",
        "key: a\nfoo\nbar: 1\n",
    ]
    for i, text in enumerate(texts):
        for error in errors_of(tmp_path / str(i), {"a.yaml": text}):
            for jargon in ("^", "$", "pattern", "while scanning", "mapping values", "simple key", "Input should"):
                assert jargon not in error, error


# --- every error of a file with several kinds, in one run ---------------------------------------------------


MANY = """\
key: many
titel: Many mistakes
rules:
  all:
    - {field: total_amount, op: '>=', value: lots}
    - {field: birth_date, op: '>', value: 2024-13-45}
    - {field: cty, op: '=>', value: Moscow}
    - {purchase: {category: [Cofee]}, within: 3M, sum_amount: {'>=': 500}}
from: {union: [bse]}
---
key: base
rules: {field: city, op: is_null}
"""


def test_every_error_of_a_file_with_several_kinds_in_one_run(tmp_path: Path) -> None:
    env = project(tmp_path, {"many.yaml": MANY, "broken.yaml": "key: b\ntitle: a: b\n"})
    write_values(tmp_path / "acrm.duckdb")
    done = validate(env)
    where = f"{tmp_path}/segments"
    assert done.returncode == 1
    assert lines(done.stderr) == [
        f"{where}/broken.yaml:2: invalid YAML: unexpected ':' here; put a text that contains ': ' in quotes "
        "(title: 'a: b'), and indent a key no further than the keys beside it",
        f"{where}/many.yaml:2: titel: unknown field (did you mean: title)",  # structural
        f"{where}/many.yaml:5: rules.all[0].value: expected a number for total_amount, got 'lots'",  # type
        f"{where}/many.yaml:6: rules.all[1].value: '2024-13-45' is not a date: there is no month 13 (months are 01 "
        "to 12)",  # invalid date
        f"{where}/many.yaml:7: rules.all[2].field: unknown feature 'cty' (did you mean: city, country)",
        f"{where}/many.yaml:7: rules.all[2].op: expected one of =, !=, <, <=, >, >=, between, in, not_in, is_null, "
        "is_not_null, contains, has_tag, got '=>' (did you mean: >=)",  # operator typo
        f"{where}/many.yaml:8: rules.all[3].purchase.category[0]: warning: no product category 'Cofee' in the "
        "loaded data (did you mean: Coffee); this value matches nothing",  # filter value
        f"{where}/many.yaml:9: from.union[0]: unknown segment 'bse' (did you mean: base)",  # unknown reference
        "acrm validate: 7 error(s), 1 warning(s)",
    ]
