"""Phone normalisation to E.164 with `phonenumbers`, plus the region, time zone and carrier it derives.

Runs once per distinct (phone, country) pair, so repeated numbers cost nothing extra.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import phonenumbers
from phonenumbers import carrier, timezone


class Phone(NamedTuple):
    e164: str | None
    region: str | None
    timezone: str | None
    carrier: str | None


INVALID = Phone(None, None, None, None)

# A mobile number maps to every zone of its country: then the region's main zone stands in for it.
MAIN_ZONE = {
    "RU": "Europe/Moscow",
    "KZ": "Asia/Almaty",
    "BY": "Europe/Minsk",
    "UA": "Europe/Kyiv",
    "US": "America/New_York",
    "CA": "America/Toronto",
    "BR": "America/Sao_Paulo",
    "AU": "Australia/Sydney",
}


def _zone(zones: list[str], region: str | None) -> str | None:
    if len(zones) == 1:
        return zones[0]
    main = MAIN_ZONE.get(region or "")
    if main in zones:
        return main
    return zones[0] if zones else None


@lru_cache(maxsize=1_000_000)
def normalise_phone(raw: str | None, region: str | None) -> Phone:
    """Parse a phone in any national or international format; invalid numbers give all-None."""
    if not raw:
        return INVALID
    try:
        number = phonenumbers.parse(raw, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return INVALID
    if not phonenumbers.is_valid_number(number):
        return INVALID
    zones = [z for z in timezone.time_zones_for_number(number) if z != "Etc/Unknown"]
    number_region = phonenumbers.region_code_for_number(number)
    return Phone(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=number_region,
        timezone=_zone(zones, number_region),
        carrier=carrier.name_for_number(number, "en") or None,
    )
