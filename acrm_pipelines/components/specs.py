"""The segment, export and journey YAML of one load, read once and shared by the components that need them."""

from __future__ import annotations

from dataclasses import dataclass

from acrm_pipelines.exports.validate import ExportSet, load_export_set
from acrm_pipelines.journeys.status import branch_segments
from acrm_pipelines.journeys.validate import JourneySet, load_journey_set
from acrm_pipelines.segments.validate import SegmentSet, load_segment_set
from acrm_pipelines.wiring.load import Load, current


@dataclass(frozen=True)
class Specs:
    segments: SegmentSet
    exports: ExportSet
    journeys: JourneySet
    keyed: list[str]  # the segments with an asset key of their own (exported, refreshed, or read by those)
    inactive: frozenset[str]


def specs(load: Load | None = None) -> Specs:
    """The YAML of `load` (by default, the one in progress)."""
    load = load or current()
    return load.once("specs", lambda: _read(load))


def _read(load) -> Specs:
    # Invalid segment, export or journey files stop loading here, with every error's file, line and field.
    segments = load_segment_set(load.settings)
    exports = load_export_set(load.settings, segments)
    journeys = load_journey_set(load.settings, segments, exports)
    consumed = {exports[k].segment.segment for k in exports.keys if exports[k].segment is not None}
    for key in journeys.keys:
        j = journeys[key]
        consumed |= {*j.on.segments, *(e.segment for e in j.exit_when if e.segment), *branch_segments(j)}
    keyed = keyed_segments(segments, consumed)
    inactive = frozenset(k for k in segments.order if not segments[k].active)
    return Specs(segments, exports, journeys, keyed, inactive)


def keyed_segments(segments: SegmentSet, consumed: set[str]) -> list[str]:
    """The segments with their own asset key: `consumed` (what the exports read), those refreshed every N
    hours or with a size check, and every segment those are built from (so their lineage is whole)."""
    roots = [
        k
        for k in segments.order
        if k in consumed or segments[k].refresh_hours is not None or segments[k].size_alert is not None
    ]
    return segments.closure(roots)
