"""Date values of the segment language: absolute, relative to the as-of date, month-day, and windows.

All arithmetic happens here in Python, so the SQL only ever sees literal dates and timestamps.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta

from dateutil.relativedelta import relativedelta

from acrm_pipelines.segments.spec import Window

RELATIVE_RE = re.compile(r"today|[+-][0-9]{1,5}[dwMy]")
MONTH_DAY_RE = re.compile(r"^([0-9]{2})-([0-9]{2})$")


def relative(value: str, as_of: date) -> date:
    """`today`, `-90d`, `+3d`, `-2w`, `-3M`, `+1y` from the as-of date.

    Months and years are calendar ones: the day is clipped to the month's length (31 Mar − 1M = 29 Feb or 28 Feb;
    29 Feb + 1y = 28 Feb), as `relativedelta` does.
    """
    if value == "today":
        return as_of
    n, unit = int(value[:-1]), value[-1]
    if unit == "d":
        return as_of + timedelta(days=n)
    if unit == "w":
        return as_of + timedelta(weeks=n)
    return as_of + (relativedelta(months=n) if unit == "M" else relativedelta(years=n))


def is_relative(value: object) -> bool:
    return isinstance(value, str) and bool(RELATIVE_RE.fullmatch(value))


def parse_date(value: object, as_of: date | None = None) -> date | None:
    """An absolute ISO date, or a relative one when `as_of` is given; None when it is neither."""
    if not isinstance(value, str):
        return None
    if is_relative(value):
        return relative(value, as_of) if as_of is not None else date.min
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def month_day(value: object, as_of: date | None = None) -> tuple[int, int] | None:
    """`MM-DD`, or a relative date's month and day; None when it is neither."""
    if not isinstance(value, str):
        return None
    if is_relative(value):
        if as_of is None:
            return (1, 1)
        d = relative(value, as_of)
        return d.month, d.day
    match = MONTH_DAY_RE.match(value)
    if not match:
        return None
    month, day = int(match.group(1)), int(match.group(2))
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(2024, month)[1]):
        return None
    return month, day


def cutoff(as_of: date) -> datetime:
    """The end of the as-of day: rows strictly before it count."""
    return datetime.combine(as_of + timedelta(days=1), datetime.min.time())


def window_start(window: Window, as_of: date) -> datetime:
    """Start of `window` counted back from the end of the as-of day (months are calendar months)."""
    end = cutoff(as_of)
    if window.unit == "h":
        return end - timedelta(hours=window.n)
    if window.unit == "d":
        return end - timedelta(days=window.n)
    if window.unit == "w":
        return end - timedelta(weeks=window.n)
    return end - (relativedelta(months=window.n) if window.unit == "M" else relativedelta(years=window.n))
