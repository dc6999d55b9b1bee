"""Which attribution window each campaign's orders are counted with (docs/analytics.md, "Attribution")."""

from __future__ import annotations

from typing import Any

from acrm_pipelines.exports.spec import window_hours
from acrm_pipelines.exports.validate import ExportSet
from acrm_pipelines.segments.spec import Window, parse_window


def attribution_vars(exports: ExportSet, default: str) -> dict[str, Any]:
    """The dbt vars of the analytics build: {campaign: hours} for the campaigns whose exports set a window (the
    validator made them agree), and the default's hours (ACRM_ATTRIBUTION_WINDOW, e.g. "7d") for the rest."""
    windows = {
        exports[k].campaign: window_hours(exports[k].attribution_window)
        for k in exports.keys
        if exports[k].attribution_window is not None
    }
    return {
        "attribution_windows": dict(sorted(windows.items())),
        "attribution_default_hours": window_hours(Window(**parse_window(default))),
    }
