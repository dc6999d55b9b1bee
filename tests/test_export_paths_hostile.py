"""Hostile file-export paths: each is refused at validation (file:line: destination.path) or written inside the outbox.

Paths are templates with exactly {key}, {as_of}, {campaign} and {type}. Before the fix they went through
str.format, so a format spec (`{type:.0}`) expanded to nothing after the check for `/` and `..`: these
cases wrote customer e-mails outside the outbox. Every case checks the file system: nothing appears
outside the outbox in tmp_path, whatever the outcome. Definitions that skip validation (built in code) are
checked again when writing, and so are symbolic links, which only the file system can tell.
"""

from __future__ import annotations

import csv
import json
import os
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from acrm_pipelines.exports.destinations import DeliveryFailed
from acrm_pipelines.exports.destinations.files import write_atomically
from acrm_pipelines.exports.run import run_export
from acrm_pipelines.exports.spec import Export, FileDestination
from acrm_pipelines.exports.validate import load_exports
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.yaml_specs import DefinitionErrors

DAY = date(2024, 3, 1)
EVERYONE = "key: everyone\nrules: {field: customer_id, op: is_not_null}\n"
EMAILS = {"c1": "anna@example.org", "c2": "boris@example.org"}
PATH_LINE = 7  # the line of `path:` in definition()
NOT_A_PLACEHOLDER = (
    "is not a placeholder: write exactly {key}, {as_of}, {campaign} or {type} "
    "(no format specs, conversions, indexes or other braces)"
)
ABSOLUTE = "path must stay inside ACRM_OUTBOX_DIR: it must be relative, not absolute"
PARENT = "path must stay inside ACRM_OUTBOX_DIR: '..' is not allowed"
FILE_NAME = "path must end with a file name"
CONTROL = "path must not contain control characters (NUL, newline, …)"
LONG_NAME = "path has a folder or file name longer than 200 bytes"


def rows() -> list[dict]:
    return [{"customer_id": c, "email": e, "consent_email": True} for c, e in EMAILS.items()]


def definition(path: str | None, campaign: str = "spring-24", kind: str = "csv") -> str:
    fields = "{customer_id: customer_id, email: email}"
    return (
        "key: hook\n"
        "segment: everyone\n"
        f"channel: {'ads' if kind != 'csv' else 'email'}\n"
        f"campaign: {campaign}\n"
        "destination:\n"
        f"  type: {kind}\n"
        + (f"  path: {json.dumps(path)}\n" if path is not None else "")  # line 7; JSON strings are YAML
        + f"fields: {fields}\n"
    )


def files_outside(tmp: Path, outbox: Path) -> set[Path]:
    """Every file, folder and link under tmp outside the outbox (links are listed, not followed)."""
    found: set[Path] = set()
    for folder, dirs, files in os.walk(tmp):
        for name in dirs + files:
            path = Path(folder, name)
            if not path.is_relative_to(outbox):
                found.add(path)
    return found


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> content of every file below folder (links followed: what a reader there would see)."""
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}


def load(tmp: Path, text: str, segments) -> Export:
    folder = tmp / "exports"
    folder.mkdir(exist_ok=True)
    (folder / "e.yaml").write_text(text)
    return load_exports([folder], segments, load_catalogue(), root=folder)["hook"]


def validation_errors(tmp: Path, text: str, segments) -> list[str]:
    with pytest.raises(DefinitionErrors) as info:
        load(tmp, text, segments)
    return [str(e) for e in info.value.errors]


def emails_in(path: Path) -> list[str]:
    with path.open() as f:
        return sorted(r["email"] for r in csv.DictReader(f))


# `<TMP>` is tmp_path: an absolute target stays inside the test's folder, where the check below can see it.
# Before the fix, the cases marked LEAKED wrote the e-mails to tmp_path/stolen.
REFUSED = [
    ("{key:>0}.csv", f"'{{key:>0}}' {NOT_A_PLACEHOLDER}"),
    ("{as_of!r}.csv", f"'{{as_of!r}}' {NOT_A_PLACEHOLDER}"),
    ("{0}.csv", f"'{{0}}' {NOT_A_PLACEHOLDER}"),
    ("{}.csv", f"'{{}}' {NOT_A_PLACEHOLDER}"),
    ("{key.__class__}.csv", f"'{{key.__class__}}' {NOT_A_PLACEHOLDER}"),
    ("{key[0]}.csv", f"'{{key[0]}}' {NOT_A_PLACEHOLDER}"),
    ("{KEY}.csv", f"'{{KEY}}' {NOT_A_PLACEHOLDER}"),
    ("{{key}}.csv", f"'{{' {NOT_A_PLACEHOLDER}"),
    ("{key}}.csv", f"'}}' {NOT_A_PLACEHOLDER}"),
    ("{type:.0}<TMP>/stolen/{key}.csv", f"'{{type:.0}}' {NOT_A_PLACEHOLDER}"),  # LEAKED: absolute
    ("{as_of:.0}../stolen/{key}.csv", f"'{{as_of:.0}}' {NOT_A_PLACEHOLDER}"),  # LEAKED: parent
    ("{key:.0}..{campaign:.0}/stolen/x.csv", f"'{{key:.0}}' {NOT_A_PLACEHOLDER}"),  # LEAKED: parent
    ("{key}/..{as_of:.0}/..{type:.0}/stolen/x.csv", f"'{{as_of:.0}}' {NOT_A_PLACEHOLDER}"),  # LEAKED: parent
    ("<TMP>/abs/{key}.csv", ABSOLUTE),
    ("../{key}.csv", PARENT),
    ("{key}/../../x.csv", PARENT),
    ("sub/../../x", PARENT),
    ("sub/..", PARENT),
    ("..", PARENT),
    ("..\\..\\x.csv", "path must use / between folders, not \\"),
    ("", "path is empty"),
    ("{key}/", FILE_NAME),
    ("sub/.", FILE_NAME),
    (".", FILE_NAME),
    ("{key}\x00.csv", CONTROL),
    ("{key}\n.csv", CONTROL),
    ("x" * 201 + ".csv", LONG_NAME),
    ("ü" * 101 + "/x.csv", LONG_NAME),  # bytes, not characters
    ("/".join(["d" * 100] * 11) + "/x.csv", "path is longer than 1,024 bytes"),
]


def hostile(template: str, tmp: Path) -> str:
    return template.replace("<TMP>", str(tmp))


@pytest.mark.parametrize(("template", "message"), REFUSED)
def test_refused_at_validation_naming_file_line_and_field(tmp_path: Path, template: str, message: str, make_db) -> None:
    con, segments = make_db(tmp_path, rows(), EVERYONE, DAY)
    assert validation_errors(tmp_path, definition(hostile(template, tmp_path)), segments) == [
        f"e.yaml:{PATH_LINE}: destination.path: {message}"
    ]


@pytest.mark.parametrize(("template", "message"), REFUSED)
def test_refused_again_when_writing_a_definition_that_skipped_validation(
    tmp_path: Path, template: str, message: str, make_db
) -> None:
    con, segments = make_db(tmp_path, rows(), EVERYONE, DAY)
    valid = load(tmp_path, definition(None), segments)
    export = valid.model_copy(
        update={"destination": FileDestination.model_construct(type="csv", path=hostile(template, tmp_path))}
    )
    outbox = tmp_path / "outbox"
    before = files_outside(tmp_path, outbox)

    with pytest.raises(DeliveryFailed) as failed:
        run_export(con, export, DAY, outbox, "r1")

    assert str(failed.value) == f"export hook: destination.path: {message}; nothing was written"
    assert files_outside(tmp_path, outbox) == before
    assert not outbox.exists() or tree(outbox) == {}
    assert con.execute("SELECT status FROM exports.runs WHERE export_key = 'hook'").fetchall() == [("failed",)]


def test_placeholder_values_are_checked_with_the_exports_own_campaign(tmp_path: Path, make_db) -> None:
    """The field alone is fine; three 100-character campaigns make one name too long for the file system."""
    con, segments = make_db(tmp_path, rows(), EVERYONE, DAY)
    text = definition("{campaign}{campaign}{campaign}.csv", campaign="c" * 100)
    assert validation_errors(tmp_path, text, segments) == [f"e.yaml:{PATH_LINE}: destination.path: {LONG_NAME}"]
    assert load(tmp_path, definition("{campaign}{campaign}.csv", campaign="c" * 98), segments).key == "hook"


STAYS_INSIDE = [
    (None, "hook/2024-03-01.csv"),
    ("{key}/{campaign}/{as_of}.{type}", "hook/spring-24/2024-03-01.csv"),
    ("./{key}//x.csv", "hook/x.csv"),
    (".../{key}.csv", ".../hook.csv"),
    ("..a/b..csv", "..a/b..csv"),
    ("~/{key}.csv", "~/hook.csv"),
    ("%2e%2e/{key}.csv", "%2e%2e/hook.csv"),
    ("$HOME/{key}.csv", "$HOME/hook.csv"),
    ("ünï/{key}.csv", "ünï/hook.csv"),
    ("{key}", "hook"),
    ("x" * 200, "x" * 200),
]


@pytest.mark.parametrize(("template", "written"), STAYS_INSIDE)
def test_odd_but_harmless_paths_are_written_inside_the_outbox(
    tmp_path: Path, template: str | None, written: str, make_db
):
    con, segments = make_db(tmp_path, rows(), EVERYONE, DAY)
    export = load(tmp_path, definition(template), segments)
    outbox = tmp_path / "outbox"
    before = files_outside(tmp_path, outbox)

    result = run_export(con, export, DAY, outbox, "r1")

    assert result.location == str(outbox / written)
    assert list(tree(outbox)) == [written]
    assert emails_in(outbox / written) == sorted(EMAILS.values())
    assert files_outside(tmp_path, outbox) == before


# --- symbolic links: only the file system knows; refused when writing ----------------------------------------


def planted(tmp: Path) -> Path:
    """A folder outside the outbox that a link inside it points to."""
    outside = tmp / "outside"
    outside.mkdir()
    return outside


@pytest.mark.parametrize(
    ("link", "template"),
    [
        ("shared", "shared/{key}.csv"),  # a linked folder named by the path
        ("hook", None),  # the default path's own folder ({key}) is a link
        ("a/b", "a/b/c/{key}.csv"),  # a link deeper down, with more folders to create below it
    ],
)
def test_a_folder_linked_outside_the_outbox_is_refused(
    tmp_path: Path, link: str, template: str | None, make_db
) -> None:
    con, segments = make_db(tmp_path, rows(), EVERYONE, DAY)
    export = load(tmp_path, definition(template), segments)  # valid: the path alone stays inside
    outbox = tmp_path / "outbox"
    outside = planted(tmp_path)
    (outbox / link).parent.mkdir(parents=True, exist_ok=True)
    (outbox / link).symlink_to(outside, target_is_directory=True)

    with pytest.raises(DeliveryFailed, match="leads outside ACRM_OUTBOX_DIR through a symbolic link") as failed:
        run_export(con, export, DAY, outbox, "r1")

    assert str(failed.value).startswith("export hook: destination.path ")
    assert list(outside.iterdir()) == []


def test_a_file_linked_outside_the_outbox_is_refused(tmp_path: Path, make_db) -> None:
    con, segments = make_db(tmp_path, rows(), EVERYONE, DAY)
    export = load(tmp_path, definition(None), segments)
    outbox = tmp_path / "outbox"
    outside = planted(tmp_path)
    (outside / "keep.txt").write_text("someone else's file")
    (outbox / "hook").mkdir(parents=True)
    (outbox / "hook" / "2024-03-01.csv").symlink_to(outside / "keep.txt")

    with pytest.raises(DeliveryFailed, match="leads outside ACRM_OUTBOX_DIR through a symbolic link"):
        run_export(con, export, DAY, outbox, "r1")
    assert tree(outside) == {"keep.txt": "someone else's file"}


def test_links_inside_the_outbox_and_a_linked_outbox_are_followed(tmp_path: Path, make_db) -> None:
    """The outbox itself may be a link (to a share); a link from one outbox folder to another stays inside."""
    con, segments = make_db(tmp_path, rows(), EVERYONE, DAY)
    export = load(tmp_path, definition("latest/{key}.csv"), segments)
    real = tmp_path / "share" / "outbox"
    (real / "2024").mkdir(parents=True)
    (real / "latest").symlink_to(real / "2024", target_is_directory=True)
    outbox = tmp_path / "outbox"
    outbox.symlink_to(real, target_is_directory=True)

    result = run_export(con, export, DAY, outbox, "r1")

    assert result.location == str(real / "2024" / "hook.csv")
    assert emails_in(real / "2024" / "hook.csv") == sorted(EMAILS.values())
    assert list(tree(real)) == ["2024/hook.csv"]  # written once, through the links (rglob does not follow them)


def test_a_folder_turned_into_a_link_after_the_check_is_refused_when_writing(tmp_path: Path) -> None:
    """write_atomically checks the folder it is about to write in (a link swapped in after Job.path)."""
    outbox = tmp_path / "outbox"
    outside = planted(tmp_path)
    outbox.mkdir()
    (outbox / "hook").symlink_to(outside, target_is_directory=True)
    table = pa.table({"customer_id": ["c1"], "email": [EMAILS["c1"]]})

    with pytest.raises(DeliveryFailed, match="changed into a symbolic link while writing"):
        write_atomically(table, outbox.resolve() / "hook" / "2024-03-01.csv", "csv")
    assert list(outside.iterdir()) == []


def test_audience_and_ledger_files_are_held_to_the_outbox_too(tmp_path: Path, make_db) -> None:
    con, segments = make_db(tmp_path, rows(), EVERYONE, DAY)
    outbox = tmp_path / "outbox"
    text = definition("{type:.0}" + str(tmp_path / "stolen" / "{key}.csv"), kind="google_customer_match")
    assert validation_errors(tmp_path, text, segments) == [
        f"e.yaml:{PATH_LINE}: destination.path: '{{type:.0}}' {NOT_A_PLACEHOLDER}"
    ]
    audience = load(tmp_path, definition(None, kind="google_customer_match"), segments)
    bypass = audience.model_copy(
        update={
            "destination": audience.destination.model_copy(
                update={"path": "{type:.0}" + str(tmp_path / "stolen" / "{key}.csv")}
            )
        }
    )
    with pytest.raises(DeliveryFailed, match="is not a placeholder"):
        run_export(con, bypass, DAY, outbox, "r1")
    assert not (tmp_path / "stolen").exists()

    # A bonus ledger's file is <key>/<campaign>.bonus.csv: a linked folder fails it before anything is issued.
    (tmp_path / "exports" / "e.yaml").write_text(
        definition(None).replace("  type: csv\n", "  type: bonus\n  points: 10\n")
    )
    bonus = load_exports([tmp_path / "exports"], segments, load_catalogue(), root=tmp_path)["hook"]
    outside = planted(tmp_path)
    outbox.mkdir(exist_ok=True)
    (outbox / "hook").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DeliveryFailed, match="leads outside ACRM_OUTBOX_DIR through a symbolic link"):
        run_export(con, bonus, DAY, outbox, "r1")
    assert list(outside.iterdir()) == []
    assert con.execute("SELECT count(*) FROM exports.ledger").fetchone() == (0,)
