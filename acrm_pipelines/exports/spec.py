"""The export language as typed objects (docs/exports.md): which segment, to where, with which fields.

Secrets never live here: a database DSN or a webhook token is named by the environment variable
that holds it (`dsn_env`: ACRM_POSTGRES_DSN or ACRM_POSTGRES_DSN_*, `token_env`: ACRM_SECRET_*; the two
sets are disjoint, so no definition can send a DSN as a token). Webhook URLs are http(s) without
credentials (in the user part or the query), to loopback hosts or hosts listed in
ACRM_WEBHOOK_ALLOWED_HOSTS (checked by validate.py, and again when sending). `redact` is the one helper
that every message printing a URL or a DSN goes through.

File paths are templates relative to the outbox with exactly the placeholders {key}, {as_of}, {campaign}
and {type}: no str.format (format specs and conversions could expand to nothing and leave the outbox).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import string
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from acrm_pipelines.segments.spec import KEY_PATTERN, Window, parse_window

# The environment variables a definition may read. Tokens and DSNs have disjoint names, so a token_env
# cannot name a DSN (and send it as a bearer token), nor a dsn_env a token (and print it in a parse error).
TOKEN_ENV_PATTERN = r"^ACRM_SECRET_[A-Z0-9_]+$"
DSN_ENV_PATTERN = r"^ACRM_POSTGRES_DSN(_[A-Z0-9_]+)?$"
TOKEN_ENV_RULE = "token_env names an environment variable ACRM_SECRET_<NAME> (upper case), not the token itself"
DSN_ENV_RULE = (
    "dsn_env names an environment variable ACRM_POSTGRES_DSN or ACRM_POSTGRES_DSN_<NAME> (upper case), "
    "not the DSN itself"
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SegmentRef(Strict):
    segment: Annotated[str, Field(pattern=KEY_PATTERN)]
    arm: str | None = None


# An attribution window has a fixed length: months and years do not.
WINDOW_HOURS = {"h": 1, "d": 24, "w": 168}


def window_hours(window: Window) -> int:
    return window.n * WINDOW_HOURS[window.unit]


class FieldSpec(Strict):
    """An output column: a feature (optionally formatted) or a constant."""

    feature: str | None = None
    const: bool | int | float | str | None = None
    format: Literal["upper", "lower", "title", "trim", "date", "round0", "round2", "int"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"feature": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        if (self.feature is None) == (self.const is None):
            raise ValueError("a field is a feature name or {const: value}, not both")
        if self.const is not None and self.format is not None:
            raise ValueError("format applies to features, not constants")
        return self


class FrequencyCap(Strict):
    """At most `max` messages per customer on the export's channel within `per` (sent + exported)."""

    max: int = Field(ge=1)
    per: Annotated[Window, BeforeValidator(parse_window)]


_PLACEHOLDER = re.compile(r"\{(key|as_of|campaign|type)\}")
_BRACES = re.compile(r"\{[^{}]*\}|[{}]")
# Per folder or file name: 255 bytes on Linux file systems, less room for the temporary file written
# beside it (`.<name>.<random>.tmp`) and an audience's `<name>.remove.csv`.
NAME_MAX = 200
PATH_MAX = 1024  # the whole path below the outbox, leaving room for the outbox itself in PATH_MAX 4096
SAMPLE_PATH_VALUES = {"key": "k", "as_of": "2024-01-01", "campaign": "c", "type": "csv"}


def expand_path(template: str, values: Mapping[str, str]) -> str:
    """The template with exactly {key}, {as_of}, {campaign} and {type} filled in; any other brace is an error."""
    for match in _BRACES.finditer(template):
        if not _PLACEHOLDER.fullmatch(match.group()):
            raise ValueError(
                f"{match.group()!r} is not a placeholder: write exactly {{key}}, {{as_of}}, {{campaign}} or "
                "{type} (no format specs, conversions, indexes or other braces)"
            )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def path_problem(rel: str) -> str | None:
    """Why an expanded path (relative to the outbox) is refused, or None; lexical, the file system is not read."""
    if not rel:
        return "path is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        return "path must not contain control characters (NUL, newline, …)"
    if "\\" in rel:
        return "path must use / between folders, not \\"
    if rel.startswith("/"):
        return "path must stay inside ACRM_OUTBOX_DIR: it must be relative, not absolute"
    parts = rel.split("/")
    if ".." in parts:
        return "path must stay inside ACRM_OUTBOX_DIR: '..' is not allowed"
    if parts[-1] in ("", "."):
        return "path must end with a file name"
    if any(len(part.encode()) > NAME_MAX for part in parts):
        return f"path has a folder or file name longer than {NAME_MAX} bytes"
    if len(rel.encode()) > PATH_MAX:
        return f"path is longer than {PATH_MAX:,} bytes"
    return None


def outbox_relative(template: str, values: Mapping[str, str]) -> PurePosixPath:
    """The expanded path below the outbox (normalised: no `.` or empty parts); ValueError says why not."""
    rel = expand_path(template, values)
    problem = path_problem(rel)
    if problem:
        raise ValueError(problem)
    return PurePosixPath(rel)


def path_values(export: Export, as_of: str, suffix: str | None = None) -> dict[str, str]:
    return {
        "key": export.key,
        "as_of": as_of,
        "campaign": export.campaign,
        "type": export.destination.type if suffix is None else suffix,
    }


def _check_path(value: str) -> str:
    # The placeholders' own values are checked here with sample values (keys and campaigns cannot hold / or
    # braces); validate.py checks again with the export's key and campaign (their length).
    outbox_relative(value, SAMPLE_PATH_VALUES)
    return value


# Relative to ACRM_OUTBOX_DIR; {key}, {as_of}, {campaign} and {type} are filled in.
OutboxPath = Annotated[str, AfterValidator(_check_path)]


class FileDestination(Strict):
    type: Literal["csv", "parquet"]
    path: OutboxPath = "{key}/{as_of}.{type}"


class AudienceDestination(Strict):
    type: Literal["google_customer_match", "meta_custom_audience"]
    path: OutboxPath = "{key}/{as_of}.csv"


IP = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOPBACK_NAMES = frozenset({"localhost"})


def ip_of(host: str) -> IP | None:
    """The address a host literal stands for (IPv4-mapped IPv6 as IPv4), or None for a name."""
    # Only an IPv6 zone (`fe80::1%25eth0`) is unquoted: the resolver takes other %-escapes literally.
    try:
        ip = ipaddress.ip_address(host.strip().strip("[]").replace("%25", "%"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1, whatever Python's version says about it
    return ip


def canonical_host(host: str) -> str:
    """A host as compared with the allow-list: an address in its normal form, a name lower-case, IDNA."""
    ip = ip_of(host)
    if ip is not None:
        return str(ip)
    name = host.strip().lower().rstrip(".")
    if not name.isascii():
        with contextlib.suppress(httpx.InvalidURL, UnicodeError):
            name = httpx.URL(f"http://{name}/").raw_host.decode("ascii")
    return name


def host_listed(host: str, allowed: Iterable[str]) -> bool:
    return canonical_host(host) in {canonical_host(h) for h in allowed}


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Loopback (127.0.0.0/8, ::1, localhost) or listed; every other host must be listed by name or address."""
    ip = ip_of(host)
    if ip is not None and ip.is_loopback:
        return True
    return canonical_host(host) in LOOPBACK_NAMES or host_listed(host, allowed)


# Query parameters that carry credentials (compared lower-case, without - and _): these belong in token_env.
_SECRET_PARAM_PARTS = (
    "token",
    "secret",
    "passw",
    "pwd",
    "signature",
    "credential",
    "auth",
    "session",
    "apikey",
    "hmac",
)
_SECRET_PARAM_ENDS = ("key", "sig", "pass")


def secret_param(name: str) -> bool:
    norm = re.sub(r"[^a-z0-9]", "", unquote_plus(name).lower())
    return any(p in norm for p in _SECRET_PARAM_PARTS) or norm.endswith(_SECRET_PARAM_ENDS)


def _query_items(query: str) -> list[str]:
    return [item for item in re.split(r"[&;]", query) if item]


# Path segments that look like a token (Slack- or Discord-style webhook URLs carry the secret in the path).
_TOKEN_SEGMENT = re.compile(r"(?=[A-Za-z0-9_-]*[A-Za-z])(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}")


def redact_url(url: str) -> str:
    """A URL as it may be printed: no user:password, no query or fragment values, no token-like path segments."""
    try:
        split = urlsplit(url)
    except ValueError:
        return "(a URL that cannot be parsed; not shown)"
    netloc = split.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    path = "/".join("***" if _TOKEN_SEGMENT.fullmatch(seg) else seg for seg in split.path.split("/"))
    query = "&".join(
        f"{name}=***" if eq else "***" for name, eq, _ in (item.partition("=") for item in _query_items(split.query))
    )
    return urlunsplit((split.scheme, netloc, path, query, "***" if split.fragment else ""))


def url_secrets(url: str) -> list[str]:
    """The parts redact_url hides, for `redact` to find them elsewhere (a receiver echoing its path)."""
    try:
        split = urlsplit(url)
    except ValueError:
        return [url]
    parts = [split.netloc.rpartition("@")[0], split.fragment]
    parts += [seg for seg in split.path.split("/") if _TOKEN_SEGMENT.fullmatch(seg)]
    for item in _query_items(split.query):
        name, eq, value = item.partition("=")
        parts += [value, unquote_plus(value)] if eq else [name, unquote_plus(name)]
    return [p for p in parts if p]


# A URL in running text ends before the punctuation that follows it ("…/hook?token=x, then").
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:!?)\]]")
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
MIN_SECRET = 4  # shorter values would garble every message they occur in; DSN parsing redacts those


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Text fit for an error, a log line or metadata: every URL in it redacted (redact_url), `password=…` of
    key=value DSNs hidden, and every occurrence of the given secret values (tokens, DSNs, passwords) replaced."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)
    text = _DSN_PASSWORD.sub(lambda m: m.group(1) + "***", text)
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def url_problem(url: str) -> str | None:
    """Why a webhook URL is refused whatever the allow-list says, or None (the message never repeats the URL)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "url must not contain spaces or control characters"
    try:
        parsed = httpx.URL(url)
        split = urlsplit(url)
        split.port  # noqa: B018 - raises ValueError for a port out of range
    except (httpx.InvalidURL, ValueError) as err:
        return f"url is not valid: {redact(str(err))}"
    if parsed.scheme not in ("http", "https"):
        return f"url scheme {parsed.scheme or '(none)'!r} is not allowed: use http:// or https://"
    if parsed.userinfo or split.username is not None or split.password is not None:
        return "url must not contain credentials (user:password@): put a token in the variable named by token_env"
    for item in _query_items(split.query):
        name = item.partition("=")[0]
        if secret_param(name):
            return (
                f"url must not carry a credential in its query ({name[:40]}=…): put the token in an "
                "environment variable ACRM_SECRET_<NAME> and name it in token_env (sent as a bearer token)"
            )
    if not parsed.host:
        return "url has no host"
    if canonical_host(split.hostname or "") != canonical_host(parsed.host):
        # Parsers that disagree on the host are how allow-lists are bypassed; refuse rather than guess.
        return "url is ambiguous: its host cannot be determined reliably"
    return None


def url_host(url: str) -> str:
    """The host httpx connects to (an IPv6 address without brackets); for a URL url_problem accepts."""
    return httpx.URL(url).host


class WebhookDestination(Strict):
    type: Literal["webhook"]
    url: str
    token_env: str | None = None  # ACRM_SECRET_*, sent as "Authorization: Bearer …"
    batch_size: int = Field(default=500, ge=1, le=100_000)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    timeout_seconds: float = Field(default=10, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _safe_url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(TOKEN_ENV_PATTERN, value):
            raise ValueError(TOKEN_ENV_RULE)
        return value


class PostgresDestination(Strict):
    type: Literal["postgres"]
    dsn_env: str = "ACRM_POSTGRES_DSN"
    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")

    @field_validator("dsn_env")
    @classmethod
    def _dsn_env(cls, value: str) -> str:
        if not re.fullmatch(DSN_ENV_PATTERN, value):
            raise ValueError(DSN_ENV_RULE)
        return value


class BonusDestination(Strict):
    type: Literal["bonus"]
    points: int = Field(gt=0)
    reason: str = "campaign"


class PromoCodeDestination(Strict):
    type: Literal["promo_code"]
    length: int = Field(default=10, ge=6, le=32)
    alphabet: str = Field(default="ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_length=16)
    prefix: str = Field(default="", pattern=r"^[A-Z0-9-]{0,12}$")

    @field_validator("alphabet")
    @classmethod
    def _distinct(cls, value: str) -> str:
        if len(set(value)) != len(value) or any(c not in string.ascii_letters + string.digits for c in value):
            raise ValueError("alphabet must be distinct letters and digits")
        return value


Destination = Annotated[
    FileDestination
    | AudienceDestination
    | WebhookDestination
    | PostgresDestination
    | BonusDestination
    | PromoCodeDestination,
    Field(discriminator="type"),
]


class Export(Strict):
    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    title: str | None = None
    # The audience, every partition; none for an export only journeys send (their steps choose who).
    segment: SegmentRef | None = None
    channel: Literal["email", "sms", "push", "viber", "ads", "other"]
    campaign: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
    mode: Literal["full", "delta"] = "full"
    destination: Destination
    fields: dict[str, FieldSpec] = Field(default_factory=lambda: {"customer_id": FieldSpec(feature="customer_id")})
    frequency_cap: FrequencyCap | None = None
    hold_out_arm: str | None = "control"  # members of this arm are recorded but never sent
    active: bool = True
    # The dates the export sends for (inclusive); outside them a run records why and sends nothing.
    starts: date | None = None
    ends: date | None = None
    # How long after a send (or a click) an order counts for the campaign (docs/analytics.md); in hours, days or
    # weeks. Unset: ACRM_ATTRIBUTION_WINDOW. Every export of a campaign that sets it sets the same.
    attribution_window: Annotated[Window, BeforeValidator(parse_window)] | None = None

    @field_validator("attribution_window")
    @classmethod
    def _fixed_length(cls, value: Window | None) -> Window | None:
        if value is not None and value.unit not in WINDOW_HOURS:
            raise ValueError(f"attribution window {value}: use hours, days or weeks (12h, 7d, 2w)")
        return value

    @field_validator("segment", mode="before")
    @classmethod
    def _segment_shorthand(cls, value: Any) -> Any:
        return {"segment": value} if isinstance(value, str) else value

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
                raise ValueError(f"output field {name!r}: use letters, digits and _")
        reserved = [n for n in value if n.lower().startswith("acrm_")]
        if reserved:
            raise ValueError(f"output field {reserved[0]!r}: names starting with acrm_ are reserved")
        if "customer_id" in value and value["customer_id"].feature != "customer_id":
            raise ValueError("the output field customer_id is always the customer's id")
        return value

    @model_validator(mode="after")
    def _fits_destination(self) -> Export:
        dest = self.destination.type
        if dest in ("google_customer_match", "meta_custom_audience") and self.channel != "ads":
            raise ValueError(f"a {dest} export uses channel: ads")
        if dest in ("bonus", "promo_code") and self.mode == "delta":
            raise ValueError(f"{dest} is exactly once per customer and campaign already; use mode: full")
        if self.starts and self.ends and self.ends < self.starts:
            raise ValueError(f"ends ({self.ends}) is before starts ({self.starts})")
        return self
