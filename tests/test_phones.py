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


def test_many_phones_are_parsed_by_worker_processes_in_order(monkeypatch) -> None:
    """Past PARALLEL_FROM numbers, worker processes parse them: the same results, in the same order."""
    from acrm_pipelines.ingest import phones

    monkeypatch.setattr(phones, "PARALLEL_FROM", 1_000)
    monkeypatch.setattr(phones, "CHUNK", 700)
    pairs = [
        (f"8 (9{i % 100:02d}) {i % 1000:03d}-{i % 97:02d}-{i % 89:02d}", "RU")
        if i % 5
        else (f"+1 212 555 {i % 10000:04d}", None)
        for i in range(3_000)
    ] + [("not a phone", "RU"), ("+49 30 901820", None)]
    normalise_phone.cache_clear()
    got = phones.normalise_phones(pairs)
    assert normalise_phone.cache_info().currsize == 0  # none were parsed in this process
    assert got == [normalise_phone(raw, region) for raw, region in pairs]
    assert got[-2].e164 is None and got[-1].e164 == "+4930901820"
    assert sum(p.e164 is not None for p in got) > 2_500
