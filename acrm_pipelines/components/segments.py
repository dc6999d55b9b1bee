"""The segment YAML folder (ACRM_SEGMENTS_DIR) as one multi-asset: a key per segment that something
downstream consumes, the others in the `segment_set` asset's table (docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from acrm_pipelines.components.specs import specs
from acrm_pipelines.segments.assets import build_segment_assets
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.partitions import daily_partitions


@dataclass
class SegmentsComponent(dg.Component, dg.Resolvable):
    """Every segment of ACRM_SEGMENTS_DIR, evaluated per daily partition, with history and size checks."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        found = specs()
        assets = build_segment_assets(found.segments, daily_partitions(current().settings), found.keyed)
        return dg.Definitions(assets=[assets] if assets else [])
