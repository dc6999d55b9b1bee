"""`Settings.from_env()`: the ACRM_* variables of docs/settings-and-cli.md, their defaults and their errors."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from acrm_pipelines.settings import REPO_ROOT, Settings

VARIABLES = {
    "ACRM_LANDING_DIR": "landing_dir",
    "ACRM_DUCKDB_PATH": "duckdb_path",
    "ACRM_SEGMENTS_DIR": "segments_dir",
    "ACRM_EXPORTS_DIR": "exports_dir",
    "ACRM_OUTBOX_DIR": "outbox_dir",
    "ACRM_START_DATE": "start_date",
    "ACRM_DEFAULT_REGION": "default_region",
    "ACRM_FRESHNESS_DAYS": "freshness_days",
    "ACRM_DUCKDB_MEMORY_LIMIT": "duckdb_memory_limit",
    "ACRM_WEBHOOK_ALLOWED_HOSTS": "webhook_allowed_hosts",
    "ACRM_ATTRIBUTION_WINDOW": "attribution_window",
    "ACRM_JOURNEYS_DIR": "journeys_dir",
    "ACRM_JOURNEY_TICK_MINUTES": "journey_tick_minutes",
}
DEFAULTS = Settings(
    landing_dir=REPO_ROOT / "data/landing",
    duckdb_path=REPO_ROOT / "data/acrm.duckdb",
    segments_dir=REPO_ROOT / "segments",
    exports_dir=REPO_ROOT / "exports",
    outbox_dir=REPO_ROOT / "data/outbox",
    start_date=date(2024, 1, 1),
    default_region="RU",
    freshness_days=3,
    duckdb_memory_limit="8GB",
    webhook_allowed_hosts=(),
    attribution_window="7d",
    journeys_dir=REPO_ROOT / "journeys",
    journey_tick_minutes=15,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_defaults() -> None:
    assert Settings.from_env() == DEFAULTS


def test_empty_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.setenv(name, "")
    assert Settings.from_env() == DEFAULTS


def test_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACRM_LANDING_DIR", str(tmp_path / "landing"))  # absolute: as it is
    monkeypatch.setenv("ACRM_DUCKDB_PATH", "elsewhere/x.duckdb")  # relative: from the repository root
    monkeypatch.setenv("ACRM_SEGMENTS_DIR", "../segs")
    monkeypatch.setenv("ACRM_START_DATE", "2019-02-28")
    monkeypatch.setenv("ACRM_DEFAULT_REGION", "de")
    monkeypatch.setenv("ACRM_FRESHNESS_DAYS", "10")
    monkeypatch.setenv("ACRM_DUCKDB_MEMORY_LIMIT", "2GB")
    monkeypatch.setenv("ACRM_WEBHOOK_ALLOWED_HOSTS", " hooks.example.com , ,10.0.0.5,fe80::1")
    settings = Settings.from_env()
    assert settings == dataclasses.replace(
        DEFAULTS,
        landing_dir=tmp_path / "landing",
        duckdb_path=REPO_ROOT / "elsewhere/x.duckdb",
        segments_dir=REPO_ROOT / "../segs",
        start_date=date(2019, 2, 28),
        default_region="DE",
        freshness_days=10,
        duckdb_memory_limit="2GB",
        webhook_allowed_hosts=("hooks.example.com", "10.0.0.5", "fe80::1"),
    )
    assert settings.duckdb_config() == {"memory_limit": "2GB"}


def test_values_are_taken_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """No JSON decoding of the host list, no trimming of the region, only exact (upper-case) names."""
    monkeypatch.setenv("ACRM_WEBHOOK_ALLOWED_HOSTS", '["a"]')
    monkeypatch.setenv("ACRM_DEFAULT_REGION", " us")
    monkeypatch.setenv("acrm_freshness_days", "9")
    settings = Settings.from_env()
    assert settings.webhook_allowed_hosts == ('["a"]',)
    assert settings.default_region == " US"
    assert settings.freshness_days == 3


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ACRM_START_DATE", "2024-13-01", "ACRM_START_DATE: expected YYYY-MM-DD, got '2024-13-01'"),
        ("ACRM_START_DATE", " ", "ACRM_START_DATE: expected YYYY-MM-DD, got ' '"),
        ("ACRM_FRESHNESS_DAYS", "x", "ACRM_FRESHNESS_DAYS: expected a whole number, got 'x'"),
        ("ACRM_FRESHNESS_DAYS", "2.5", "ACRM_FRESHNESS_DAYS: expected a whole number, got '2.5'"),
        (
            "ACRM_WEBHOOK_ALLOWED_HOSTS",
            "ok.example.com,hooks.example.com:443",
            "ACRM_WEBHOOK_ALLOWED_HOSTS: expected host names or IP addresses separated by commas, "
            "got 'hooks.example.com:443'",
        ),
    ],
)
def test_errors_name_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as caught:
        Settings.from_env()
    assert str(caught.value) == message
    assert type(caught.value) is ValueError  # not pydantic's ValidationError, whose text is several lines


def test_the_first_bad_variable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACRM_FRESHNESS_DAYS", "x")
    monkeypatch.setenv("ACRM_START_DATE", "soon")
    with pytest.raises(ValueError, match=r"^ACRM_START_DATE: expected YYYY-MM-DD, got 'soon'$"):
        Settings.from_env()


def test_settings_are_frozen_and_hashable() -> None:
    settings = Settings.from_env()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.freshness_days = 1  # type: ignore[misc]
    assert hash(settings) == hash(Settings.from_env())
    assert dataclasses.replace(settings, freshness_days=1).freshness_days == 1


@pytest.mark.parametrize("bad", ["7", "1M", "0d", "seven days", "7d;"])
def test_a_bad_attribution_window_names_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("ACRM_ATTRIBUTION_WINDOW", bad)
    with pytest.raises(ValueError) as err:
        Settings.from_env()
    assert str(err.value) == f"ACRM_ATTRIBUTION_WINDOW: expected hours, days or weeks (12h, 7d, 2w), got {bad!r}"


def test_an_attribution_window_is_read_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACRM_ATTRIBUTION_WINDOW", "36h")
    assert Settings.from_env().attribution_window == "36h"
