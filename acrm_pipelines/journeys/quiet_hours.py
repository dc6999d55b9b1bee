"""When a send may go: the first moment at or after a time that falls in the journey's local hours and days.

Times are UTC without a zone, as the loaded timestamps are; the hours are the customer's own (their
`timezone` feature, else the journey's `timezone`). Daylight-saving changes are zoneinfo's.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from acrm_pipelines.journeys.spec import WEEKDAYS


def next_allowed(at: datetime, zone: ZoneInfo, hours: tuple[time, time] | None, days: list[str] | None) -> datetime:
    if hours is None and days is None:
        return at
    start, end = hours or (time(0), None)
    local = at.replace(tzinfo=UTC).astimezone(zone)
    for ahead in range(8):
        day = local.date() + timedelta(days=ahead)
        if days is not None and WEEKDAYS[day.weekday()] not in days:
            continue
        opens = datetime.combine(day, start, zone)
        closes = datetime.combine(day, end, zone) if end else datetime.combine(day + timedelta(days=1), time(0), zone)
        if local >= closes:
            continue
        moment = max(local, opens)
        return moment.astimezone(UTC).replace(tzinfo=None)
    raise AssertionError("a week always has an allowed day")  # send_on has at least one day


def zone_of(name: str | None, default: ZoneInfo) -> ZoneInfo:
    """The customer's zone, or the default when unknown or not a zone this machine knows."""
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        return default
