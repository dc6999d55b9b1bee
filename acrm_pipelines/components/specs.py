"""The segment and export YAML of one load, read once and shared by the components that need them."""

from __future__ import annotations

from dataclasses import dataclass

from acrm_pipelines.exports.assets import load_export_set
from acrm_pipelines.exports.validate import ExportSet
from acrm_pipelines.segments.assets import keyed_segments, load_segment_set
from acrm_pipelines.segments.validate import SegmentSet
from acrm_pipelines.wiring.load import current


@dataclass(frozen=True)
class Specs:
    segments: SegmentSet
    exports: ExportSet
    keyed: list[str]  # the segments with an asset key of their own (exported, refreshed, or read by those)
    inactive: frozenset[str]


def specs() -> Specs:
    load = current()
    return load.once("specs", lambda: _read(load))


def _read(load) -> Specs:
    # Invalid segment or export files stop loading here, with every error's file, line and field.
    segments = load_segment_set(load.settings)
    exports = load_export_set(load.settings, segments)
    keyed = keyed_segments(segments, {exports[k].segment.segment for k in exports.keys})
    inactive = frozenset(k for k in segments.order if not segments[k].active)
    return Specs(segments, exports, keyed, inactive)
