"""The export YAML folder (ACRM_EXPORTS_DIR) as one asset per export, each with its delivery checks."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from acrm_pipelines.components.specs import specs
from acrm_pipelines.exports.assets import build_exports
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.partitions import daily_partitions


@dataclass
class ExportsComponent(dg.Component, dg.Resolvable):
    """Every export of ACRM_EXPORTS_DIR, downstream of its segment, delivered exactly once per partition."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        settings = current().settings
        found = specs()
        assets, checks = build_exports(found.exports, settings, daily_partitions(settings), found.inactive)
        return dg.Definitions(assets=assets, asset_checks=checks)
