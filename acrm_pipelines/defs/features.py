"""The dbt project as assets: one `dbt build` per partition."""

import dagster as dg

from acrm_pipelines.features.dbt import build_dbt_assets
from acrm_pipelines.wiring.load import current
from acrm_pipelines.wiring.partitions import daily_partitions


@dg.definitions
def features() -> dg.Definitions:
    return dg.Definitions(assets=[build_dbt_assets(daily_partitions(current().settings))])
