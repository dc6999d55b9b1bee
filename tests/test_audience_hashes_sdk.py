"""Ad-audience hashes held to the platforms' own SDKs, on a generated corpus of tricky identities.

The references (dev dependencies, see pyproject.toml):
- google_customer_match: Google's `google-ads-datamanager-util`, `google.ads.datamanager_util.Formatter`
  (`process_email_address`, `process_phone_number`, `process_given_name`, `process_family_name`, hex;
  `process_region_code` for the country, which is not hashed). A value the Formatter rejects with
  `ValueError` must leave an empty cell.
- meta_custom_audience: Meta's `facebook-business`, `CustomAudience.format_params` with the multi-key
  schema (`EMAIL`, `PHONE`, `FN`, `LN`, `COUNTRY`) and `is_raw=True`, which trims, lower-cases,
  normalises per key (`normalize_key`) and hashes.

Every expected value is computed by an SDK, never by our code: from the value that reaches the export, or,
for a phone stored in a national format, from the number's international form written by construction
(our ingest turns `8 916 123-45-67` into E.164 with the customer's country or the default region, RU; the
SDKs expect the country code to be there already). Where we deliberately differ from Meta's SDK because
Meta's documentation says otherwise (docs/exports.md, "Normalisation before hashing"), the case names the
rule, the expected value is the SDK's output for the input with that documented rule applied (or written
by hand, for letters outside a-z), and a separate test checks that the SDK really differs there.
"""

from __future__ import annotations

import csv
import hashlib
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from facebook_business.adobjects.customaudience import CustomAudience
from google.ads.datamanager_util import Encoding, Formatter

from acrm_pipelines.exports.destinations.audiences import GOOGLE as GOOGLE_COLUMNS
from acrm_pipelines.exports.destinations.audiences import META as META_COLUMNS
from acrm_pipelines.exports.destinations.audiences import normalise
from acrm_pipelines.exports.run import run_export
from acrm_pipelines.ingest.phones import normalise_phone

GOOGLE = "google_customer_match"
META = "meta_custom_audience"
FEATURES = ("email", "phone", "first_name", "last_name", "country")
DEFAULT_REGION = "RU"  # Settings.default_region when ACRM_DEFAULT_REGION is unset, as the loader uses it
EMPTY_HASH = hashlib.sha256(b"").hexdigest()

# --- the references ----------------------------------------------------------------------------------------

FORMATTER = Formatter()
GOOGLE_SDK = {
    "email": lambda v: FORMATTER.process_email_address(v, Encoding.HEX),
    "phone": lambda v: FORMATTER.process_phone_number(v, Encoding.HEX),
    "first_name": lambda v: FORMATTER.process_given_name(v, Encoding.HEX),
    "last_name": lambda v: FORMATTER.process_family_name(v, Encoding.HEX),
    "country": FORMATTER.process_region_code,
}
KEYS = CustomAudience.Schema.MultiKeySchema
META_KEYS = {
    "email": KEYS.email,
    "phone": KEYS.phone,
    "first_name": KEYS.fn,
    "last_name": KEYS.ln,
    "country": KEYS.country,
}


def google_sdk(feature: str, value: str) -> str | None:
    """The Formatter's cell for `value`; None (an empty cell) where it rejects the value."""
    try:
        return GOOGLE_SDK[feature](value)
    except ValueError:
        return None


def meta_sdk(feature: str, value: str) -> str:
    """What `format_params` sends for `value` as the only key of a raw multi-key upload."""
    params = CustomAudience.format_params([META_KEYS[feature]], [[value]], is_raw=True)
    return params["payload"]["data"][0][0]


# --- the corpus ----------------------------------------------------------------------------------------------

# Meta rules where we follow Meta's documentation instead of its SDK (docs/exports.md names the doc).
UNICODE_SPACE = "meta: all Unicode whitespace is trimmed"  # the SDK trims only ' \t\r\n\0\x0b.'
LEADING_ZEROS = "meta: leading zeros removed"  # the SDK keeps the 00 of `00 44 …`
OTHER_SCRIPTS = "meta: letters outside a-z kept, NFC"  # the SDK keeps a-z only: `Иван` becomes ''
NOTHING_LEFT = "meta: nothing left, empty cell"  # the SDK hashes the empty string


@dataclass(frozen=True)
class Case:
    kind: str  # the class, e.g. "email/gmail-plus"
    feature: str
    value: str  # what reaches the export: the raw value, or ingest's E.164 for a phone stored nationally
    sdk_input: str  # what the SDKs are given: the value, or the phone's international form
    meta_rule: str | None = None
    meta_letters: str | None = None  # OTHER_SCRIPTS: the name's letters, written by hand
    meta_input: str | None = None  # LEADING_ZEROS: the number as Meta documents it, without the zeros

    @property
    def google(self) -> str | None:
        return google_sdk(self.feature, self.sdk_input)

    @property
    def meta(self) -> str | None:
        if self.meta_rule == UNICODE_SPACE:
            return meta_sdk(self.feature, self.sdk_input.strip())
        if self.meta_rule == OTHER_SCRIPTS:
            return hashlib.sha256(self.meta_letters.encode("utf-8")).hexdigest()
        if self.meta_rule == NOTHING_LEFT:
            return None
        return meta_sdk(self.feature, self.meta_input or self.sdk_input)


def _meta_rule(feature: str, value: str, rule: str | None) -> str | None:
    if rule is None and meta_sdk(feature, value) == EMPTY_HASH:
        return NOTHING_LEFT
    return rule


def email_cases() -> list[Case]:
    gmail_locals = [
        "john.doe",
        "John.Doe",
        "j.o.h.n.d.o.e",
        "johndoe",
        "john.doe+ads",
        "John.Doe+Promo.2024",
        "johndoe+",
        "john+a+b",
        "first.last+tag",
        "o'neil.x",
        "user_name-1",
    ]
    gmail_domains = ["gmail.com", "GMAIL.COM", "Gmail.Com", "googlemail.com", "GoogleMail.com"]
    other_locals = ["ivan.petrov", "Ivan.Petrov+news", "a.b.c", "first+last", "x", "o'neil"]
    other_domains = ["yandex.ru", "Mail.RU", "example.co.uk", "outlook.com", "gmail.co.uk", "mail.gmail.com"]
    decorations = {
        "plain": lambda s: s,
        "upper": str.upper,
        "spaces": lambda s: f"  {s}  ",
        "tab-newline": lambda s: f"\t{s}\r\n",
        "end-dot": lambda s: f"{s}.",
        "start-dot": lambda s: f".{s}",
    }
    cases = []
    for kind, locals_, domains in (
        ("email/gmail", gmail_locals, gmail_domains),
        ("email/other", other_locals, other_domains),
    ):
        for local in locals_:
            for domain in domains:
                for name, decorate in decorations.items():
                    raw = decorate(f"{local}@{domain}")
                    sub = f"{kind}-plus" if "+" in local else kind
                    cases.append(Case(f"{sub}/{name}", "email", raw, raw, _meta_rule("email", raw, None)))
    invalid = [
        "john doe@gmail.com",
        "john.doe @gmail.com",
        "john.doe@ gmail.com",
        "john\tdoe@yandex.ru",
        "john@@gmail.com",
        "john@doe@gmail.com",
        "@gmail.com",
        "john@",
        "johndoe",
        "+ads@gmail.com",
        "...@gmail.com",
        ".+x@googlemail.com",
        "@",
        "...",
    ]
    for raw in invalid:
        cases.append(Case("email/invalid", "email", raw, raw, _meta_rule("email", raw, None)))
    for raw in [
        "\u00a0John.Doe@Gmail.com\u00a0",
        "\u2003Ivan.Petrov@Yandex.RU\u3000",
        "\x0cjohn.doe+x@gmail.com\x1c",
        "\u2028first.last@example.co.uk",
    ]:
        cases.append(Case("email/unicode-space", "email", raw, raw, UNICODE_SPACE))
    return cases


# Valid numbers (ingest drops invalid ones), split as they are usually written.
FULLWIDTH = str.maketrans("0123456789+-() ", "０１２３４５６７８９＋－（）\u3000")
RU = [("916", "123", "45", "67"), ("903", "000", "11", "22"), ("495", "123", "45", "67"), ("812", "234", "56", "78")]
US = [("650", "253", "0000"), ("212", "555", "0123"), ("415", "555", "2671")]
GB = [("20", "7946", "0958"), ("7911", "123", "456")]


def phone_cases() -> list[Case]:
    # (country code, the CRM's country or None for the default region, national formats, international
    # formats, other international-prefix forms); the SDKs get the first international format.
    groups = []
    for ac, a, b, c in RU:
        national = [
            f"8 {ac} {a}-{b}-{c}",
            f"8({ac}){a}-{b}-{c}",
            f"8{ac}{a}{b}{c}",
            f"8-{ac}-{a}-{b}-{c}",
            f" 8 ({ac}) {a} {b} {c} ",
            f"{ac} {a} {b} {c}",
            f"8 {ac} {a} {b} {c}".translate(FULLWIDTH),
        ]
        international = [f"+7 {ac} {a}-{b}-{c}", f"+7({ac}){a}{b}{c}", f"+7 ({ac}) {a} {b} {c}", f"+7{ac}{a}{b}{c}"]
        groups.append(("ru", None, national, international, [f"7 {ac} {a}{b}{c}", f"8 10 7 {ac} {a} {b} {c}"]))
        groups.append(("ru", "RU", national[:2], international[:2], []))
    for ac, x, y in US:
        national = [f"({ac}) {x}-{y}", f"{ac}-{x}-{y}", f"{ac}.{x}.{y}", f"1 {ac} {x} {y}", f"1-{ac}-{x}-{y}"]
        international = [f"+1 ({ac}) {x}-{y}", f"+1-{ac}-{x}-{y}", f"+1 {ac}.{x}.{y}", f"+1{ac}{x}{y}"]
        groups.append(("us", "US", national, international, [f"011 1 {ac} {x} {y}"]))
        groups.append(("us", None, [], international, [f"8 10 1 {ac} {x} {y}"]))
    for ac, x, y in GB:
        national = [f"0{ac} {x} {y}", f"(0{ac}) {x} {y}", f"0{ac}-{x}-{y}"]
        international = [f"+44 {ac} {x} {y}", f"+44 (0){ac} {x} {y}", f"+44-{ac}-{x}-{y}"]
        groups.append(("gb", "GB", national, international, [f"00 44 {ac} {x} {y}"]))
        groups.append(("gb", None, [], international, [f"8 10 44 {ac} {x} {y}"]))

    cases = []
    for cc, country, national, international, prefixed in groups:
        region = (country or DEFAULT_REGION).upper()
        reference = international[0]
        for raw, sub in [(r, "national") for r in national] + [(r, "international") for r in international + prefixed]:
            e164 = normalise_phone(raw, region).e164
            assert e164 is not None, (raw, region)  # every number in the corpus is a valid one
            origin = "default-region" if country is None else "crm-country"
            cases.append(Case(f"phone/{cc}-{sub}-via-ingest-{origin}", "phone", e164, reference))
        for raw in international:  # formatted international values reaching the export as they are
            cases.append(Case(f"phone/{cc}-international-as-is", "phone", raw, raw))
    for raw, without in [
        ("00 44 20 7946 0958", "+44 20 7946 0958"),
        ("0044 7911 123 456", "+44 7911 123 456"),
        ("007-916-123-45-67", "+7-916-123-45-67"),
        ("+00 1 650 253 0000", "+1 650 253 0000"),
    ]:
        # Google's Formatter keeps the zeros too (`+0044…`), and so do we: only Meta documents dropping them.
        cases.append(Case("phone/leading-zeros", "phone", raw, raw, LEADING_ZEROS, meta_input=without))
    for raw in ["n/a", "—", "+", "(-)"]:
        cases.append(Case("phone/no-digits", "phone", raw, raw, _meta_rule("phone", raw, None)))
    return cases


ASCII_NAMES = [
    "John",
    "Mary Ann",
    "O'Brien",
    "Anne-Marie",
    "McDonald",
    "St. John",
    "D'Angelo",
    "Smith-Jones",
    "van der Berg",
    "J.R.R.",
    "O\u2019Connor",  # a typographic apostrophe
    "de la Cruz",
    "Mary-Kate O'Neil",
    "Smith Jr.",
    "Ivanov_2",
]
# Names with letters outside a-z, and the letters we keep (lower-case, composed, nothing else), by hand.
OTHER_SCRIPT_NAMES = {
    "Émile": "émile",
    "José María": "josémaría",
    "Zoë": "zoë",
    "Łukasz": "łukasz",
    "Müller-Lüdenscheidt": "müllerlüdenscheidt",
    "Nuñez": "nuñez",
    "Иван": "иван",
    "Пётр": "пётр",
    "Анна-Мария": "аннамария",
    "Д'Артаньян": "дартаньян",
    "Valéry": "valéry",
    "\uc815": "\uc815",  # Korean, as in Meta's documentation
}
NAME_DECORATIONS = {
    "plain": lambda s: s,
    "upper": str.upper,
    "lower": str.lower,
    "spaces": lambda s: f"  {s}  ",
    "tab-newline": lambda s: f"\t{s}\n",
    "inner-spaces": lambda s: s.replace(" ", "   "),
    "end-dot": lambda s: f"{s}.",
    "nbsp": lambda s: f"\u00a0{s}\u00a0",
    "decomposed": lambda s: unicodedata.normalize("NFD", s),
    "decomposed-upper": lambda s: unicodedata.normalize("NFD", s.upper()),
}


def name_cases() -> list[Case]:
    cases = []
    for feature in ("first_name", "last_name"):
        for base in ASCII_NAMES + list(OTHER_SCRIPT_NAMES):
            letters = OTHER_SCRIPT_NAMES.get(base)
            kind = "other-script" if letters else ("ascii" if base.isalpha() else "ascii-marks")
            for name, decorate in NAME_DECORATIONS.items():
                raw = decorate(base)
                if letters is None and name.startswith("decomposed"):
                    continue  # the same as plain / upper for a-z
                rule = OTHER_SCRIPTS if letters else _meta_rule(feature, raw, None)
                cases.append(Case(f"{feature}/{kind}/{name}", feature, raw, raw, rule, letters))
        for raw in ["-", "'", "...", "O'", "Ж."]:
            letters = "ж" if raw == "Ж." else None
            rule = OTHER_SCRIPTS if letters else _meta_rule(feature, raw, None)
            cases.append(Case(f"{feature}/punctuation-only", feature, raw, raw, rule, letters))
    return cases


def country_cases() -> list[Case]:
    raws = ["RU", "ru", " ru ", "Ru", "\tgb\n", "US", "\u00a0us\u00a0", "kz", "RUS", "GBR", "r", "r.u", "R U", "kz."]
    raws += ["Россия"]
    return [Case("country", "country", raw, raw, _meta_rule("country", raw, None)) for raw in raws]


def blank_cases() -> list[Case]:
    return [Case("blank", f, raw, raw, NOTHING_LEFT) for f in FEATURES for raw in ["", " ", "\t\n"]]


CASES = email_cases() + phone_cases() + name_cases() + country_cases() + blank_cases()


def test_the_corpus_is_broad() -> None:
    kinds = Counter(c.kind.split("/")[0] for c in CASES)
    assert len(CASES) >= 1000
    assert kinds["email"] >= 400 and kinds["phone"] >= 100
    assert kinds["first_name"] >= 200 and kinds["last_name"] >= 200
    # every Google special case is exercised: gmail dots and plus-addressing, and values the Formatter rejects
    emails = [c for c in CASES if c.feature == "email"]
    assert sum(c.google is None for c in emails) >= 10
    assert sum("+" in c.value and "gmail" in c.value.lower() for c in emails) >= 100


# --- the functions ----------------------------------------------------------------------------------------------


def mismatches(platform: str, feature: str) -> list[tuple[str, str, str | None, str | None]]:
    wrong = []
    for case in CASES:
        if case.feature != feature:
            continue
        expected = case.google if platform == GOOGLE else case.meta
        ours = normalise(platform, feature, case.value)
        if ours != expected:
            wrong.append((case.kind, case.value, ours, expected))
    return wrong


@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize("platform", [GOOGLE, META])
def test_normalise_matches_the_sdk(platform: str, feature: str) -> None:
    wrong = mismatches(platform, feature)
    total = sum(c.feature == feature for c in CASES)
    assert not wrong, f"{len(wrong)} of {total} differ (kind, value, ours, SDK):\n" + "\n".join(map(repr, wrong))


def test_google_matches_its_sdk_with_no_exceptions() -> None:
    """Nothing on the Google side is a documented difference: the Formatter is followed everywhere."""
    differ = [(c.kind, c.value) for c in CASES if normalise(GOOGLE, c.feature, c.value) != c.google]
    assert differ == []


@pytest.mark.parametrize("rule", [UNICODE_SPACE, LEADING_ZEROS, OTHER_SCRIPTS, NOTHING_LEFT])
def test_each_documented_meta_difference_is_real_and_only_there(rule: str) -> None:
    """Where a documented rule applies, Meta's SDK gives something else (else the rule is not needed); the
    expected value then is the SDK's on the input with the rule applied (or the hand-written letters)."""
    cases = [c for c in CASES if c.meta_rule == rule]
    assert cases
    for case in cases:
        sdk = meta_sdk(case.feature, case.value)
        assert sdk != case.meta, (case.kind, case.value)
        assert normalise(META, case.feature, case.value) == case.meta, (case.kind, case.value)
        if rule == NOTHING_LEFT:
            assert sdk == EMPTY_HASH  # the SDK would send the hash of the empty string


# Meta's own examples, with the SHA-256 it publishes (Conversions API, customer information parameters; the
# Custom Audiences guide's "Hashing and Normalizing Data" gives the same rules): letters beyond a-z stay.
META_DOC_EXAMPLES = [
    ("email", "John_Smith@gmail.com", "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
    ("phone", "+1 (650)555-1212", "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"),
    ("first_name", "Mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
    ("first_name", "\uc815", "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),  # the SDK: h("")
    ("last_name", "Val\u00e9ry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),  # SDK: h("valry")
]


@pytest.mark.parametrize(("feature", "raw", "published"), META_DOC_EXAMPLES)
def test_meta_published_examples(feature: str, raw: str, published: str) -> None:
    assert normalise(META, feature, raw) == published


def test_documented_meta_differences_by_example() -> None:
    h = lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest()  # noqa: E731
    assert normalise(META, "first_name", "Иван") == h("иван")  # the SDK: h("")
    assert normalise(META, "last_name", "E\u0301mile") == h("\u00e9mile")  # the SDK: h("emile")
    assert normalise(META, "phone", "00 44 20 7946 0958") == h("442079460958")  # the SDK: h("00442079460958")
    assert normalise(META, "email", "\u00a0a.b@x.com") == h("a.b@x.com")  # the SDK: h("\xa0a.b@x.com")
    assert normalise(META, "last_name", "--") is None  # the SDK: h("")


# --- a real export, file read back ---------------------------------------------------------------------------

SEGMENT = "key: everyone\nrules: {field: total_amount, op: '>=', value: 1}\n"
FIELDS = {"customer_id": "customer_id", **{f: f for f in FEATURES}}


@pytest.mark.parametrize("platform", [GOOGLE, META])
def test_the_audience_file_matches_the_sdk(tmp_path: Path, platform: str, make_db, one_export) -> None:
    by_feature = {f: [c for c in CASES if c.feature == f] for f in FEATURES}
    n = max(len(v) for v in by_feature.values())
    people = []
    for i in range(n):
        person = {"customer_id": f"c{i:05d}", "total_amount": 1.0}
        for feature, cases in by_feature.items():
            person[feature] = cases[i].value if i < len(cases) else None
        people.append(person)
    con, segments = make_db(tmp_path, people, SEGMENT, date(2024, 5, 6))
    definition = {
        "key": f"sdk_{platform[:4]}",
        "segment": "everyone",
        "channel": "ads",
        "campaign": "sdk-check",
        "destination": {"type": platform},
        "fields": FIELDS,
    }
    export = one_export(tmp_path, definition, segments)
    run_export(con, export, date(2024, 5, 6), tmp_path / "outbox", "r1")

    with (tmp_path / "outbox" / export.key / "2024-05-06.csv").open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    columns = GOOGLE_COLUMNS if platform == GOOGLE else META_COLUMNS
    assert header == [columns[f] for f in FEATURES]
    assert len(rows) == n  # in customer order
    wrong = []
    for j, feature in enumerate(FEATURES):
        for i, case in enumerate(by_feature[feature]):
            expected = (case.google if platform == GOOGLE else case.meta) or ""
            if rows[i][j] != expected:
                wrong.append((case.kind, case.value, rows[i][j], expected))
    assert not wrong, f"{len(wrong)} cells differ (kind, value, ours, SDK):\n" + "\n".join(map(repr, wrong[:50]))
