"""The journey language as typed objects (docs/journeys.md). YAML becomes these models right away.

Shape checks live here (which keys go together, durations, hours, time zones); references to segments and
exports are checked in validate.py. PyYAML reads the bare words `on`, `yes` and `no` as booleans, so the
models take `True`/`False` keys back as the words they were written as.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    field_validator,
    model_validator,
)

from acrm_pipelines.yaml_specs import KEY_PATTERN

DURATION_RE = re.compile(r"^([1-9][0-9]{0,5})(m|h|d|w)$")
DURATION_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_DURATION = timedelta(days=366)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PURCHASE = "purchase"  # the event of a completed order; every other event name is an event_type of the events table
Key = Annotated[str, Field(pattern=KEY_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _words(mapping: dict[bool, str]):
    """A before-validator giving boolean keys (YAML 1.1's on/yes/no) back their words."""

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {mapping.get(k, k) if isinstance(k, bool) else k: v for k, v in value.items()}
        return value

    return fix


def parse_duration(value: Any) -> Any:
    """`30m`, `1h`, `3d`, `2w` as a timedelta (minutes, hours, days, weeks; at most 366 days)."""
    if isinstance(value, timedelta):
        return value
    match = DURATION_RE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"duration {value!r}: expected a count and a unit, e.g. 30m, 1h, 3d, 2w")
    span = int(match.group(1)) * DURATION_UNITS[match.group(2)]
    if span > MAX_DURATION:
        raise ValueError(f"duration {value!r}: longer than 366 days")
    return span


YES_NO, ON = _words({True: "yes", False: "no"}), _words({True: "on"})


def duration_text(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    for unit, size in (("w", 10080), ("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


# Written back as typed (`3d`), so that a stored definition reads again.
Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(duration_text, when_used="json")]


# --- the entry ---------------------------------------------------------------------------------------------


class Moved(Strict):
    from_: Key = Field(alias="from")
    to: Key


class Entry(Strict):
    """What starts the journey for a customer: exactly one of these."""

    entered: Key | None = None
    exited: Key | None = None
    moved: Moved | None = None
    event: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one(self) -> Entry:
        given = [k for k in ("entered", "exited", "moved", "event") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of entered, exited, moved or event")
        return self

    @property
    def segments(self) -> list[str]:
        moved = [self.moved.from_, self.moved.to] if self.moved else []
        return [s for s in (self.entered, self.exited, *moved) if s]


# --- the steps ---------------------------------------------------------------------------------------------


class SendStep(Strict):
    send: Key  # an export definition, used as the action: its channel, fields and destination
    id: Key | None = None


class WaitStep(Strict):
    wait: Duration
    id: Key | None = None


class Until(Strict):
    event: str = Field(min_length=1, max_length=100)
    within: Duration


class BranchOn(Strict):
    segment: Key


class _TwoWays(Strict):
    """A step that goes on with `yes` or `no` (then the step after it)."""

    yes: list[Step] = Field(default_factory=list)
    no: list[Step] = Field(default_factory=list)
    id: Key | None = None

    @model_validator(mode="before")
    @classmethod
    def _yes_no(cls, value: Any) -> Any:
        return YES_NO(value)


class WaitUntilStep(_TwoWays):
    """Wait for an event up to `within`: on it, go on with `yes`; without it, with `no`."""

    wait_until: Until


class BranchStep(_TwoWays):
    """`yes` for members of the segment on the day before, `no` for the others."""

    branch: BranchOn


STEP_KINDS = ("send", "wait", "wait_until", "branch")


def _step_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return next(k for k in STEP_KINDS if k in type(value).model_fields)
    if isinstance(value, dict):
        found = [k for k in STEP_KINDS if k in value]
        return found[0] if len(found) == 1 else None
    return None


Step = Annotated[
    Annotated[SendStep, Tag("send")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitUntilStep, Tag("wait_until")]
    | Annotated[BranchStep, Tag("branch")],
    Discriminator(
        _step_kind,
        custom_error_type="step",
        custom_error_message="a step is one of send, wait, wait_until or branch (exactly one of them)",
    ),
]


# --- exits, re-entry, quiet hours ------------------------------------------------------------------------


class ExitWhen(Strict):
    """Leave the journey when the customer is in the segment (on a day after entering) or when the event happens."""

    segment: Key | None = None
    event: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one(self) -> ExitWhen:
        if (self.segment is None) == (self.event is None):
            raise ValueError("give exactly one of segment or event")
        return self


class ReentryAfter(Strict):
    after: Duration


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


def _hours(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"\d{2}:\d{2}-\d{2}:\d{2}", value.strip()):
        raise ValueError(f"send_between {value!r}: expected local hours as HH:MM-HH:MM, e.g. 09:00-21:00")
    try:
        start, end = (time.fromisoformat(p) for p in value.strip().split("-"))
    except ValueError:
        raise ValueError(f"send_between {value!r}: not a time of day") from None
    if start >= end:
        raise ValueError(f"send_between {value!r}: the start must be before the end (no window over midnight)")
    return (start, end)


def _hours_text(hours: tuple[time, time]) -> str:
    return f"{hours[0]:%H:%M}-{hours[1]:%H:%M}"


class Journey(Strict):
    key: Key
    title: str | None = None
    on: Entry
    steps: list[Step] = Field(min_length=1)
    exit_when: Annotated[list[ExitWhen], BeforeValidator(_as_list)] = Field(default_factory=list)
    reentry: Literal["never"] | ReentryAfter = "never"
    # Sends wait for these local hours (and days) in the customer's time zone, or `timezone` when unknown.
    send_between: Annotated[tuple[time, time], BeforeValidator(_hours), PlainSerializer(_hours_text)] | None = None
    send_on: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = Field(default=None, min_length=1)
    timezone: str = "UTC"
    active: bool = True
    starts: date | None = None  # entries before this day are not taken

    @model_validator(mode="before")
    @classmethod
    def _on(cls, value: Any) -> Any:
        return ON(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Moscow") from None
        return value

    @property
    def version(self) -> str:
        """The definition's fingerprint: customers in flight stay on the version they entered with."""
        text = json.dumps(self.model_dump(mode="json", by_alias=True, exclude={"title", "active"}), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


for _model in (_TwoWays, WaitUntilStep, BranchStep):
    _model.model_rebuild()
