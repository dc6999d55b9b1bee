"""Attribution windows in the exports' YAML: their form, one per campaign, and the dbt vars they become."""

from __future__ import annotations

from pathlib import Path

import pytest

from acrm_pipelines.analytics.attribution import attribution_vars
from acrm_pipelines.yaml_specs import DefinitionErrors

SEGMENTS = "key: everyone\ntitle: Everyone\nrules: {field: customer_id, op: is_not_null}\n"


def export(key: str, campaign: str, window: str | None = None) -> dict:
    out = {"key": key, "segment": "everyone", "channel": "email", "campaign": campaign, "destination": {"type": "csv"}}
    return out | ({"attribution_window": window} if window else {})


def test_windows_become_hours_per_campaign_and_a_default(tmp_path: Path, segment_set, export_set) -> None:
    segments = segment_set(tmp_path, SEGMENTS)
    exports = export_set(
        tmp_path,
        [export("a", "spring", "3d"), export("b", "spring", "3d"), export("c", "flash", "12h"), export("d", "x")],
        segments,
    )
    assert attribution_vars(exports, "2w") == {
        "attribution_windows": {"flash": 12, "spring": 72},
        "attribution_default_hours": 336,
    }


def test_two_windows_for_one_campaign_name_both_places(tmp_path: Path, segment_set, export_set) -> None:
    segments = segment_set(tmp_path, SEGMENTS)
    with pytest.raises(DefinitionErrors) as err:
        export_set(tmp_path, [export("a", "spring", "3d"), export("b", "spring", "7d")], segments)
    (error,) = err.value.errors
    # e.yaml (yaml.safe_dump_all: 7 lines a document, then ---): the windows are on lines 7 and 15.
    assert (error.file, error.line, error.field) == ("exports/e.yaml", 15, "attribution_window")
    assert error.message == (
        "campaign 'spring' has attribution window 3d in export 'a' (exports/e.yaml:7): one window per campaign"
    )


@pytest.mark.parametrize("window", ["1M", "1y"])
def test_a_window_of_months_or_years_is_refused(tmp_path: Path, segment_set, export_set, window: str) -> None:
    segments = segment_set(tmp_path, SEGMENTS)
    with pytest.raises(DefinitionErrors) as err:
        export_set(tmp_path, [export("a", "spring", window)], segments)
    (error,) = err.value.errors
    assert error.field == "attribution_window"
    assert f"attribution window {window}: use hours, days or weeks (12h, 7d, 2w)" in error.message
