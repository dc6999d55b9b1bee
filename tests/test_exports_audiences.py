"""Advertising audiences: identifiers normalised as Google and Meta document it, then SHA-256, nothing raw.

Every expected value is written out by hand from the platforms' rules and hashed here with hashlib
(tests/test_audience_hashes_sdk.py holds the same functions to the platforms' SDKs on a generated corpus):
- Google Customer Match: trim and lower-case; the dots and any `+suffix` of the local part of gmail.com /
  googlemail.com addresses removed; phones in E.164 with the `+`; names only trimmed and lower-cased
  (punctuation kept, as Google's Formatter does); the country as a two-letter code, not hashed.
- Meta Custom Audiences: trim and lower-case (dots kept); phones as digits only with the country code, no
  `+` and no leading zeros; first and last names without punctuation; the country lower-cased and hashed.
"""

from __future__ import annotations

import csv
import hashlib
from datetime import date
from pathlib import Path

import pytest

from acrm_pipelines.exports.destinations.audiences import normalise
from acrm_pipelines.exports.run import run_export

GOOGLE = "google_customer_match"
META = "meta_custom_audience"
DAY1 = date(2024, 5, 6)
DAY2 = date(2024, 5, 7)


def h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- the pure functions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "feature", "raw", "expected"),
    [
        # e-mails: Google drops the dots before @gmail.com / @googlemail.com, Meta keeps them
        (GOOGLE, "email", "  John.Doe@GMAIL.com ", h("johndoe@gmail.com")),
        (META, "email", "  John.Doe@GMAIL.com ", h("john.doe@gmail.com")),
        (GOOGLE, "email", "Jane.Q.Public@GoogleMail.com", h("janeqpublic@googlemail.com")),
        (GOOGLE, "email", "John.Doe+ads@gmail.com", h("johndoe@gmail.com")),  # Gmail plus-addressing goes
        (META, "email", "John.Doe+ads@gmail.com", h("john.doe+ads@gmail.com")),
        (GOOGLE, "email", " Ivan.Petrov@Yandex.RU", h("ivan.petrov@yandex.ru")),  # other domains keep their dots
        (META, "email", " Ivan.Petrov@Yandex.RU", h("ivan.petrov@yandex.ru")),
        # phones: E.164 with + for Google, digits with the country code and no leading zeros for Meta
        (GOOGLE, "phone", "+7 (916) 123-45-67", h("+79161234567")),
        (META, "phone", "+7 (916) 123-45-67", h("79161234567")),
        (GOOGLE, "phone", "+79161234567", h("+79161234567")),
        (META, "phone", "+79161234567", h("79161234567")),
        (META, "phone", "00 44 20 7946 0958", h("442079460958")),  # the 00 international prefix goes
        (META, "phone", "007-916-123-45-67", h("79161234567")),
        # names: trimmed and lower-cased; Google keeps everything else as given, Meta keeps letters only
        # (accents kept, UTF-8, composed)
        (GOOGLE, "first_name", "  JOHN ", h("john")),
        (META, "first_name", "  JOHN ", h("john")),
        (GOOGLE, "last_name", " O'Brien ", h("o'brien")),
        (META, "last_name", " O'Brien ", h("obrien")),
        (META, "first_name", "Émile", h("\u00e9mile")),
        (META, "first_name", "E\u0301MILE", h("\u00e9mile")),  # decomposed É: the same hash as composed
        (GOOGLE, "first_name", "E\u0301MILE", h("e\u0301mile")),  # Google's Formatter: the characters as given
        # country: Google the upper-case code as is, Meta the lower-case code hashed
        (GOOGLE, "country", " ru ", "RU"),
        (META, "country", " RU ", h("ru")),
        # nothing to match on: no value, not a hash of the empty string
        (GOOGLE, "email", None, None),
        (META, "phone", "   ", None),
        (META, "first_name", "", None),
    ],
)
def test_normalise_matches_the_documented_rules(platform: str, feature: str, raw: str | None, expected) -> None:
    assert normalise(platform, feature, raw) == expected


def test_meta_names_lose_hyphens_too() -> None:
    assert normalise(META, "first_name", "Anne-Marie") == h("annemarie")


# --- a full export to a file -----------------------------------------------------------------------------------

SEGMENT = "key: vip\nrules: {field: total_amount, op: '>=', value: 100}\n"
FIELDS = {
    "customer_id": "customer_id",
    "email": "email",
    "phone": "phone",
    "first_name": "first_name",
    "last_name": "last_name",
    "country": "country",
}
PEOPLE = [
    {
        "customer_id": "p1",
        "email": "  John.Doe@GMAIL.com ",
        "phone": "+7 (916) 123-45-67",
        "first_name": " John ",
        "last_name": "O'Brien",
        "country": "ru",
        "total_amount": 500.0,
    },
    {
        "customer_id": "p2",
        "email": "Olga.Smirnova@Mail.RU",
        "phone": None,
        "first_name": "OLGA",
        "last_name": None,
        "country": "RU",
        "total_amount": 150.0,
    },
    {  # no e-mail, a phone only
        "customer_id": "p3",
        "email": None,
        "phone": "+44 20 7946 0958",
        "first_name": None,
        "last_name": "Brown",
        "country": "gb",
        "total_amount": 100.0,
    },
    {  # a member who unsubscribed: suppressed on the ads channel, must not reach the file
        "customer_id": "p4",
        "email": "opted.out@example.com",
        "phone": "+7 903 000 11 22",
        "first_name": "Petr",
        "last_name": "Ivanov",
        "country": "RU",
        "total_amount": 900.0,
        "unsubscribed": True,
    },
    {  # not a member
        "customer_id": "p5",
        "email": "small.spender@example.com",
        "phone": "+7 999 888 77 66",
        "first_name": "Anna",
        "last_name": "Kim",
        "country": "KZ",
        "total_amount": 10.0,
    },
]

# By hand, in customer order (p1, p2, p3); "" is an empty cell.
GOOGLE_ROWS = [
    [h("johndoe@gmail.com"), h("+79161234567"), h("john"), h("o'brien"), "RU"],
    [h("olga.smirnova@mail.ru"), "", h("olga"), "", "RU"],
    ["", h("+442079460958"), "", h("brown"), "GB"],
]
META_ROWS = [
    [h("john.doe@gmail.com"), h("79161234567"), h("john"), h("obrien"), h("ru")],
    [h("olga.smirnova@mail.ru"), "", h("olga"), "", h("ru")],
    ["", h("442079460958"), "", h("brown"), h("gb")],
]
HEADERS = {
    GOOGLE: ["Email", "Phone", "First Name", "Last Name", "Country"],
    META: ["email", "phone", "fn", "ln", "country"],
}
# None of these may appear in a file: raw values and their normalised forms (no short digit runs: hex has them).
RAW = [
    "John.Doe",
    "john.doe",
    "johndoe",
    "gmail",
    "Olga.Smirnova",
    "olga.smirnova",
    "mail.ru",
    "@",
    "+7",
    "79161234567",
    "9161234567",
    "442079460958",
    "O'Brien",
    "obrien",
    "Brown",
    "brown",
    "opted",
    "small.spender",
]


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def assert_nothing_raw(text: str) -> None:
    for raw in RAW:
        assert raw not in text, raw
    for person in PEOPLE:
        for value in (person["email"], person["phone"]):
            if value:
                assert value not in text and value.strip().lower() not in text


@pytest.fixture
def audience_export(one_export):
    """`audience_export(tmp_path, segments, platform, mode="full")`: the vip segment's ads export to `platform`."""

    def audience_export(tmp_path: Path, segments, platform: str, mode: str = "full"):
        definition = {
            "key": f"ads_{platform[:4]}",
            "segment": "vip",
            "channel": "ads",
            "campaign": "lookalike-may",
            "mode": mode,
            "destination": {"type": platform},
            "fields": FIELDS,
        }
        return one_export(tmp_path, definition, segments)

    return audience_export


@pytest.mark.parametrize(("platform", "expected"), [(GOOGLE, GOOGLE_ROWS), (META, META_ROWS)])
def test_audience_file_has_the_platform_columns_and_only_hashes(
    tmp_path: Path, platform: str, expected, make_db, audience_export
) -> None:
    con, segments = make_db(tmp_path, PEOPLE, SEGMENT, DAY1)
    export = audience_export(tmp_path, segments, platform)

    result = run_export(con, export, DAY1, tmp_path / "outbox", "r1")

    path = tmp_path / "outbox" / export.key / "2024-05-06.csv"
    assert result.location == str(path)
    header, rows = read_csv(path)
    assert header == HEADERS[platform]
    assert rows == expected  # p4 (unsubscribed) and p5 (not a member) are absent
    text = path.read_text(encoding="utf-8")
    assert_nothing_raw(text)
    assert "p1" not in text and "customer_id" not in text  # only the platform's columns leave
    assert result.counts == {
        "members": 4,
        "sent": 3,
        "suppressed": 1,
        "suppressed.unsubscribed": 1,
        "batches": 1,
        "attempts": 1,
    }
    assert sorted(p for p in path.parent.iterdir()) == [path]  # no temporary file left behind


# --- delta mode: additions and a *.remove.csv ---------------------------------------------------------------------


def day2_people() -> list[dict]:
    """p2 leaves the segment, p3 unsubscribes (still a member, so removed as suppressed), p5 enters."""
    rows = [dict(p) for p in PEOPLE]
    rows[1]["total_amount"] = 20.0
    rows[2]["unsubscribed"] = True
    rows[4]["total_amount"] = 300.0
    return rows


@pytest.mark.parametrize("platform", [GOOGLE, META])
def test_delta_writes_additions_and_a_remove_file(
    tmp_path: Path, platform: str, make_db, set_features, record_segments, audience_export
) -> None:
    con, segments = make_db(tmp_path, PEOPLE, SEGMENT, DAY1)
    export = audience_export(tmp_path, segments, platform, mode="delta")
    run_export(con, export, DAY1, tmp_path / "outbox", "r1")
    folder = tmp_path / "outbox" / export.key
    assert read_csv(folder / "2024-05-06.csv")[1] == (GOOGLE_ROWS if platform == GOOGLE else META_ROWS)
    assert not (folder / "2024-05-06.remove.csv").exists()  # nothing to remove on the first day

    set_features(con, day2_people())
    record_segments(con, segments, DAY2)
    result = run_export(con, export, DAY2, tmp_path / "outbox", "r2")

    if platform == GOOGLE:
        added = [[h("small.spender@example.com"), h("+79998887766"), h("anna"), h("kim"), "KZ"]]
        removed = [GOOGLE_ROWS[1], GOOGLE_ROWS[2]]
    else:
        added = [[h("small.spender@example.com"), h("79998887766"), h("anna"), h("kim"), h("kz")]]
        removed = [META_ROWS[1], META_ROWS[2]]
    header, rows = read_csv(folder / "2024-05-07.csv")
    assert (header, rows) == (HEADERS[platform], added)  # p5 only: p1 is already in the audience
    header, rows = read_csv(folder / "2024-05-07.remove.csv")
    assert (header, rows) == (HEADERS[platform], removed)  # p2 (left) and p3 (unsubscribed)
    for name in ("2024-05-07.csv", "2024-05-07.remove.csv"):
        text = (folder / name).read_text(encoding="utf-8")
        for raw in ("small.spender@", "smallspender@", "79998887766", "Olga", "olga.smirnova", "Brown"):
            assert raw not in text
    assert result.counts["sent"] == 1 and result.counts["removed"] == 2 and result.counts["unchanged"] == 1
    statuses = dict(
        con.execute(
            "SELECT customer_id, status FROM exports.deliveries "
            "WHERE export_key = ? AND as_of = ? AND action = 'remove'",
            [export.key, DAY2],
        ).fetchall()
    )
    assert statuses == {"p2": "removed", "p3": "removed"}
    audience = con.execute("SELECT customer_id FROM exports.audience WHERE export_key = ?", [export.key]).fetchall()
    assert sorted(r[0] for r in audience) == ["p1", "p5"]


def test_delta_removes_an_erased_customer_by_their_hashes(
    tmp_path: Path, make_db, set_features, record_segments, audience_export
) -> None:
    con, segments = make_db(tmp_path, PEOPLE, SEGMENT, DAY1)
    export = audience_export(tmp_path, segments, META, mode="delta")
    run_export(con, export, DAY1, tmp_path / "outbox", "r1")
    set_features(con, [p for p in PEOPLE if p["customer_id"] != "p2"])  # p2 asked to be forgotten
    record_segments(con, segments, DAY2)
    run_export(con, export, DAY2, tmp_path / "outbox", "r2")

    header, rows = read_csv(tmp_path / "outbox" / export.key / "2024-05-07.remove.csv")
    assert rows == [META_ROWS[1]]
