"""The landing folder's tables as raw assets, with their Great Expectations and freshness checks."""

import dagster as dg

from acrm_pipelines.ingest.assets import raw_assets, raw_checks
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.partitions import daily_partitions


@dg.definitions
def ingest() -> dg.Definitions:
    settings = current().settings
    partitions = daily_partitions(settings)
    return dg.Definitions(assets=raw_assets(settings, partitions), asset_checks=raw_checks(settings, partitions))
