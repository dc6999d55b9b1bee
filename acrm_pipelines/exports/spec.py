"""The export language as typed objects (docs/exports.md): which segment, to where, with which fields.

Secrets never live here: a database DSN or a webhook token is named by the environment variable
that holds it (`dsn_env`, `token_env`).
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

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


class WebhookDestination(Strict):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    token_env: str | None = Field(default=None, pattern=ENV_PATTERN)  # sent as "Authorization: Bearer …"
    batch_size: int = Field(default=500, ge=1, le=100_000)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    timeout_seconds: float = Field(default=10, gt=0, le=300)


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
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", name):
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
