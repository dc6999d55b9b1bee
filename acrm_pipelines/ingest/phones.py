"""Phone normalisation to E.164 with `phonenumbers`, plus the region, time zone and carrier it derives.

Runs once per distinct (phone, country) pair, so repeated numbers cost nothing extra. `phonenumbers` is
pure Python (~50 µs a number: ~9 minutes for 10M customers on one core), so many numbers are parsed by
one worker process per core.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
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


# Below this many numbers, starting the worker processes (~1 s: each imports phonenumbers) costs more than
# it saves.
PARALLEL_FROM = 100_000
CHUNK = 50_000


def normalise_phones(pairs: Sequence[tuple[str, str | None]]) -> list[Phone]:
    """`normalise_phone` of each (raw, region), in order: one worker process per core for many numbers."""
    workers = min(os.cpu_count() or 1, 8)
    if len(pairs) < PARALLEL_FROM or workers < 2:
        return [normalise_phone(raw, region) for raw, region in pairs]
    chunks = [list(pairs[i : i + CHUNK]) for i in range(0, len(pairs), CHUNK)]
    # spawn, not fork: the loading process holds DuckDB's and Dagster's threads, whose locks a fork copies.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [phone for part in pool.map(_normalise_chunk, chunks) for phone in part]


def _normalise_chunk(pairs: list[tuple[str, str | None]]) -> list[Phone]:
    return [normalise_phone(raw, region) for raw, region in pairs]
