"""Phones in national and international formats become E.164 with region and time zone."""

from __future__ import annotations

import pytest

from acrm_pipelines.ingest.phones import normalise_phone


@pytest.mark.parametrize(
    ("raw", "region", "e164", "phone_region"),
    [
        ("8 (916) 123-45-67", "RU", "+79161234567", "RU"),
        ("+7 916 123 45 67", None, "+79161234567", "RU"),
        ("89161234567", "RU", "+79161234567", "RU"),
        ("(916) 123 4567", "RU", "+79161234567", "RU"),
        ("+7 701 123 45 67", "RU", "+77011234567", "KZ"),  # the number's own region wins over the hint
        ("+44 20 7946 0958", "RU", "+442079460958", "GB"),
    ],
)
def test_valid_numbers(raw: str, region: str | None, e164: str, phone_region: str) -> None:
    phone = normalise_phone(raw, region)
    assert (phone.e164, phone.region) == (e164, phone_region)


@pytest.mark.parametrize(
    ("raw", "zone"),
    [
        ("+7 383 212 34 56", "Asia/Novosibirsk"),  # a landline: its own zone
        ("+7 916 123 45 67", "Europe/Moscow"),  # a mobile spans the country: the main zone
        ("+7 701 123 45 67", "Asia/Almaty"),
        ("+1 212 555 0100", "America/New_York"),
    ],
)
def test_time_zone_comes_from_the_number(raw: str, zone: str) -> None:
    assert normalise_phone(raw, "RU").timezone == zone


@pytest.mark.parametrize("raw", ["12-34", "", None, "not a phone", "+7 000"])
def test_invalid_numbers_are_null(raw: str | None) -> None:
    assert normalise_phone(raw, "RU").e164 is None
