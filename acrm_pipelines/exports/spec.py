"""The export language as typed objects (docs/exports.md): which segment, to where, with which fields.

Secrets never live here: a database DSN or a webhook token is named by the environment variable
that holds it (`dsn_env`, `token_env`). Webhook URLs are http(s) without credentials, to loopback hosts
or hosts listed in ACRM_WEBHOOK_ALLOWED_HOSTS (checked by validate.py, and again when sending).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import string
from collections.abc import Iterable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from acrm_pipelines.segments.spec import KEY_PATTERN, Window, _parse_window

ENV_PATTERN = r"^[A-Z][A-Z0-9_]*$"
CHANNELS = ("email", "sms", "push", "viber", "ads", "other")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SegmentRef(Strict):
    segment: Annotated[str, Field(pattern=KEY_PATTERN)]
    arm: str | None = None


FORMATS = ("upper", "lower", "title", "trim", "date", "round0", "round2", "int")


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
    per: Annotated[Window, BeforeValidator(_parse_window)]


def _check_path(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError("path must stay inside ACRM_OUTBOX_DIR (relative, no ..)")
    try:
        value.format(key="k", as_of="2024-01-01", campaign="c", type="csv")
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"path placeholders are {{key}}, {{as_of}}, {{campaign}}, {{type}}: {err}") from err
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


def url_problem(url: str) -> str | None:
    """Why a webhook URL is refused whatever the allow-list says, or None."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "url must not contain spaces or control characters"
    try:
        parsed = httpx.URL(url)
        split = urlsplit(url)
        split.port  # noqa: B018 - raises ValueError for a port out of range
    except (httpx.InvalidURL, ValueError) as err:
        return f"url is not valid: {err}"
    if parsed.scheme not in ("http", "https"):
        return f"url scheme {parsed.scheme or '(none)'!r} is not allowed: use http:// or https://"
    if parsed.userinfo or split.username is not None or split.password is not None:
        return "url must not contain credentials (user:password@): put a token in the variable named by token_env"
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
    token_env: str | None = Field(default=None, pattern=ENV_PATTERN)  # sent as "Authorization: Bearer …"
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


class PostgresDestination(Strict):
    type: Literal["postgres"]
    dsn_env: str = Field(default="ACRM_POSTGRES_DSN", pattern=ENV_PATTERN)
    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


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
    segment: SegmentRef
    channel: Literal["email", "sms", "push", "viber", "ads", "other"]
    campaign: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
    mode: Literal["full", "delta"] = "full"
    destination: Destination
    fields: dict[str, FieldSpec] = Field(default_factory=lambda: {"customer_id": FieldSpec(feature="customer_id")})
    frequency_cap: FrequencyCap | None = None
    hold_out_arm: str | None = "control"  # members of this arm are recorded but never sent
    active: bool = True

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
        return self
