"""The segment language as typed objects (docs/segments.md). YAML becomes these models right away.

Shape checks live here (which keys go together, list lengths, window syntax); checks that need the
feature catalogue or other segments (field names, value types, references, cycles) are in validate.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from acrm_pipelines.yaml_specs import KEY_PATTERN  # kept with the reader, which words it plainly

WINDOW_RE = re.compile(r"^([1-9][0-9]{0,11})([hdwMy])$")  # long counts get the limit's message below
# The longest window and the furthest relative date (`-30d`), per unit: 100 years. Counted from any
# as-of date in 1900..2200 the result stays inside Python's calendar (years 1..9999), so a definition
# that validates can never overflow the date arithmetic when it is evaluated.
MAX_SPAN = {"h": 876_000, "d": 36_600, "w": 5_228, "M": 1_200, "y": 100}
SPAN_LIMITS = ", ".join(f"{n:,}{unit}" for unit, n in MAX_SPAN.items())
# Arm weights are relative; the cap keeps each finite and their sum far from overflowing.
MAX_WEIGHT = 1_000_000
FieldOp = Literal[
    "=", "!=", "<", "<=", ">", ">=", "between", "in", "not_in", "is_null", "is_not_null", "contains", "has_tag"
]
Scalar = bool | int | float | str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _as_list(value: Any) -> Any:
    """`category: Tea` means `category: [Tea]`."""
    return [value] if isinstance(value, str | int | float) and not isinstance(value, bool) else value


StrList = Annotated[list[str], BeforeValidator(_as_list), Field(min_length=1)]


# --- selection on customer features ----------------------------------------------------------------


class FieldCondition(Strict):
    """`{field: total_amount, op: ">=", value: 20000}`; dates may be relative (`-90d`) or ignore the year."""

    field: str
    op: FieldOp
    value: Scalar | list[Scalar] | None = None
    ignore_year: bool = False

    @model_validator(mode="after")
    def _value_shape(self) -> FieldCondition:
        op, value = self.op, self.value
        if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
            raise ValueError("a value must be a finite number (not .inf or .nan)")
        if op in ("is_null", "is_not_null"):
            if value is not None:
                raise ValueError(f"op {op} takes no value")
        elif op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise ValueError("op between needs a list of two values [low, high]")
        elif op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise ValueError(f"op {op} needs a non-empty list of values")
        elif value is None or isinstance(value, list):
            raise ValueError(f"op {op} needs one value")
        if self.ignore_year and op not in ("=", "between"):
            raise ValueError("ignore_year works with op = or between")
        return self


class AllGroup(Strict):
    all: list[Condition] = Field(min_length=1)


class AnyGroup(Strict):
    any: list[Condition] = Field(min_length=1)


class NotGroup(Strict):
    not_: Condition = Field(alias="not")


# --- behaviour in a window ---------------------------------------------------------------------------


class Window(Strict):
    """The last N hours / days / weeks / calendar months / years up to the end of the as-of day."""

    n: int = Field(ge=1)
    unit: Literal["h", "d", "w", "M", "y"]

    @model_validator(mode="after")
    def _at_most_100_years(self) -> Window:
        if self.n > MAX_SPAN[self.unit]:
            raise ValueError(f"window {self}: longer than 100 years (the limits: {SPAN_LIMITS})")
        return self

    def __str__(self) -> str:
        return f"{self.n}{self.unit}"


def parse_window(value: Any) -> Any:
    """A window written "30d" as {"n": 30, "unit": "d"} for `Window` (anything else as given): public, so
    that exports' frequency caps take the same syntax as behaviour conditions."""
    if isinstance(value, str):
        match = WINDOW_RE.match(value.strip())
        if not match:
            raise ValueError(f"window {value!r}: expected a count and a unit, e.g. 12h, 30d, 2w, 3M (months), 1y")
        return {"n": int(match.group(1)), "unit": match.group(2)}
    return value


class Comparison(Strict):
    """`{">=": 1}` or a range `{">=": 1, "<": 5}`: every comparison must hold."""

    checks: dict[Literal["=", "!=", "<", "<=", ">", ">="], Annotated[float, Field(allow_inf_nan=False)]] = Field(
        min_length=1
    )

    @model_validator(mode="before")
    @classmethod
    def _wrap(cls, value: Any) -> Any:
        if isinstance(value, dict) and "checks" not in value:
            return {"checks": value}
        return value


class PurchaseFilter(Strict):
    category: StrList | None = None
    brand: StrList | None = None
    product_id: StrList | None = None
    store_id: StrList | None = None
    channel: StrList | None = None
    status: Annotated[list[Literal["completed", "cancelled", "returned"]], BeforeValidator(_as_list)] = ["completed"]

    @property
    def by_product(self) -> bool:
        return any(v is not None for v in (self.category, self.brand, self.product_id))


class MessageFilter(Strict):
    channel: StrList | None = None
    campaign_id: StrList | None = None
    # Which moment counts: the send, or the customer's reaction (each at its own time).
    action: Literal["sent", "delivered", "opened", "clicked", "complained", "unsubscribed"] = "sent"


class EventFilter(Strict):
    type: StrList | None = None
    channel: StrList | None = None


class BonusFilter(Strict):
    reason: StrList | None = None
    sign: Literal["any", "accrual", "redemption"] = "any"


METRICS: dict[str, tuple[str, ...]] = {
    # metric -> the sources it applies to
    "count": ("purchase", "event", "message", "bonus"),
    "distinct_days": ("purchase", "event", "message", "bonus"),
    "sum_amount": ("purchase",),
    "sum_quantity": ("purchase",),
    "distinct_products": ("purchase",),
    "distinct_categories": ("purchase",),
    "distinct_campaigns": ("message",),
    "sum_points": ("bonus",),
}
SOURCES = ("purchase", "event", "message", "bonus")


class BehaviourCondition(Strict):
    """`{event: email_click, within: 6d, count: {">=": 1}}`: one source, one window, one metric."""

    purchase: PurchaseFilter | None = None
    event: EventFilter | None = None
    message: MessageFilter | None = None
    bonus: BonusFilter | None = None
    within: Annotated[Window, BeforeValidator(parse_window)]
    count: Comparison | None = None
    distinct_days: Comparison | None = None
    sum_amount: Comparison | None = None
    sum_quantity: Comparison | None = None
    distinct_products: Comparison | None = None
    distinct_categories: Comparison | None = None
    distinct_campaigns: Comparison | None = None
    sum_points: Comparison | None = None

    @field_validator("event", mode="before")
    @classmethod
    def _event_types(cls, value: Any) -> Any:
        """`event: email_click` and `event: [a, b]` are shorthands for `event: {type: [...]}`."""
        if isinstance(value, str | list):
            return {"type": value}
        return value

    @field_validator("purchase", "message", "bonus", mode="before")
    @classmethod
    def _empty_filter(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _one_source_one_metric(self) -> BehaviourCondition:
        sources = [s for s in SOURCES if getattr(self, s) is not None]
        if len(sources) != 1:
            raise ValueError(f"name exactly one of {', '.join(SOURCES)} (got {len(sources)})")
        metrics = [m for m in METRICS if getattr(self, m) is not None]
        if len(metrics) != 1:
            raise ValueError(f"give exactly one metric: {', '.join(METRICS)} (got {len(metrics)})")
        if sources[0] not in METRICS[metrics[0]]:
            allowed = [m for m, s in METRICS.items() if sources[0] in s]
            raise ValueError(f"metric {metrics[0]} does not apply to {sources[0]}; use one of {', '.join(allowed)}")
        return self

    @property
    def source(self) -> str:
        return next(s for s in SOURCES if getattr(self, s) is not None)

    @property
    def metric(self) -> str:
        return next(m for m in METRICS if getattr(self, m) is not None)

    @property
    def comparison(self) -> Comparison:
        return getattr(self, self.metric)


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for group in ("all", "any", "not"):
            if group in value:
                return group
        if "field" in value:
            return "field"
        if any(s in value for s in SOURCES) or "within" in value:
            return "behaviour"
        return "field"  # reported as a field condition with its missing keys
    if isinstance(value, BaseModel):
        return {
            AllGroup: "all",
            AnyGroup: "any",
            NotGroup: "not",
            FieldCondition: "field",
            BehaviourCondition: "behaviour",
        }.get(type(value))
    return None


Condition = Annotated[
    Annotated[AllGroup, Tag("all")]
    | Annotated[AnyGroup, Tag("any")]
    | Annotated[NotGroup, Tag("not")]
    | Annotated[FieldCondition, Tag("field")]
    | Annotated[BehaviourCondition, Tag("behaviour")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message=(
            "expected a condition: {all: [...]}, {any: [...]}, {not: ...}, {field: ..., op: ..., value: ...} "
            "or a behaviour {purchase|event|message|bonus: ..., within: ..., <metric>: {op: value}}"
        ),
    ),
]


# --- composition -----------------------------------------------------------------------------------


class SetSource(Strict):
    """`from: {union: [a, b], intersect: [c], minus: [d]}` = ((a ∪ b) ∩ c) − d."""

    union: list[str] | None = Field(default=None, min_length=1)
    intersect: list[str] | None = Field(default=None, min_length=1)
    minus: list[str] = []

    @model_validator(mode="after")
    def _something_to_start_from(self) -> SetSource:
        if not self.union and not self.intersect:
            raise ValueError("from needs union or intersect (minus alone has nothing to subtract from)")
        return self

    @property
    def refs(self) -> list[str]:
        return [*(self.union or []), *(self.intersect or []), *self.minus]


def _percent(value: Any) -> Any:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1])
        except ValueError as err:
            raise ValueError(f"expected a percentage like 10%, got {value!r}") from err
    return value


Percent = Annotated[float, BeforeValidator(_percent), Field(gt=0, lt=100)]


def _weight(value: float) -> float:
    if not (math.isfinite(value) and 0 < value <= MAX_WEIGHT):
        raise ValueError(
            f"an arm weight must be a number above 0 and at most {MAX_WEIGHT:,} (not .inf or .nan); "
            f"weights are relative: {{a: 1, b: 3}} is 25/75"
        )
    return value


Weight = Annotated[float, AfterValidator(_weight)]


class Split(Strict):
    """A control group, weighted A/B arms, or one arm per value of a field; stable per customer and salt."""

    control: Percent | None = None
    arms: dict[str, Weight] | None = None
    by_field: str | None = None
    salt: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Split:
        kinds = [k for k in ("control", "arms", "by_field") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of control, arms, by_field")
        if kinds[0] != "by_field" and not self.salt:
            raise ValueError("a random split needs a salt (e.g. the campaign id), so arms stay stable per customer")
        if self.arms is not None:
            if len(self.arms) < 2:
                raise ValueError("arms needs at least two arms")
            for name in self.arms:
                if not re.fullmatch(KEY_PATTERN, name):
                    raise ValueError(f"arm name {name!r}: use lower-case letters, digits and _")
        return self

    def arm_weights(self) -> dict[str, float]:
        if self.control is not None:
            return {"control": self.control, "treatment": 100.0 - self.control}
        return dict(self.arms or {})


def _refresh(value: str) -> str:
    if not re.fullmatch(r"([1-9]|1[0-9]|2[0-3])h", value):
        raise ValueError(f"expected a number of hours from 1h to 23h (e.g. 4h), got {value!r}")
    return value


class SizeAlert(Strict):
    """Warn (an asset check) when the size changes by more than `max_ratio` against the previous evaluation."""

    max_ratio: float = Field(gt=1)


class Segment(Strict):
    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    title: str | None = None
    description: str | None = None
    type: Literal["dynamic", "static"] = "dynamic"
    active: bool = True
    rules: Condition | None = None
    from_: SetSource | None = Field(default=None, alias="from")
    priority: list[str] | None = Field(default=None, min_length=2)
    split: Split | None = None
    size_alert: SizeAlert | None = None
    # Re-evaluate (with its exports) every N hours during the day, for today's partition: `refresh: 4h`.
    refresh: Annotated[str, AfterValidator(_refresh)] | None = None

    @property
    def refresh_hours(self) -> int | None:
        return int(self.refresh[:-1]) if self.refresh else None

    @model_validator(mode="after")
    def _refresh_only_dynamic(self) -> Segment:
        if self.refresh is not None and (self.type != "dynamic" or not self.active):
            raise ValueError("refresh is for active dynamic segments: a static or inactive one never changes")
        return self

    @model_validator(mode="after")
    def _a_base(self) -> Segment:
        if self.rules is None and self.from_ is None and self.priority is None:
            raise ValueError("a segment needs rules, from (set operations) or priority")
        if self.from_ is not None and self.priority is not None:
            raise ValueError("from and priority don't go together: a priority list is its own source")
        if self.priority is not None and self.split is not None:
            raise ValueError("priority already assigns arms (one per listed segment); a split can't be added")
        if self.priority is not None and len(set(self.priority)) != len(self.priority):
            raise ValueError("priority lists a segment twice")
        return self

    @property
    def refs(self) -> list[str]:
        """Segments this one is built from."""
        if self.from_ is not None:
            return self.from_.refs
        return list(self.priority or [])

    @property
    def arms(self) -> list[str]:
        if self.priority:
            return list(self.priority)
        if self.split is None:
            return []
        return list(self.split.arm_weights()) if self.split.by_field is None else []

    def version(self) -> str:
        """A short hash of the definition: a changed definition is a new version."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]
