"""One module per destination, all behind `Destination` (base.py); `build` picks the implementation."""

from __future__ import annotations

from acrm_pipelines.exports.destinations.base import Delivery, DeliveryFailed, Destination, Job
from acrm_pipelines.exports.spec import Export


def build(export: Export) -> Destination:
    kind = export.destination.type
    if kind in ("csv", "parquet"):
        from acrm_pipelines.exports.destinations.files import FileSink

        return FileSink()
    if kind in ("google_customer_match", "meta_custom_audience"):
        from acrm_pipelines.exports.destinations.audiences import AudienceFile

        return AudienceFile()
    if kind == "webhook":
        from acrm_pipelines.exports.destinations.webhook import Webhook

        return Webhook()
    if kind == "postgres":
        from acrm_pipelines.exports.destinations.postgres import PostgresTable

        return PostgresTable()
    from acrm_pipelines.exports.destinations.ledger import LedgerSink

    return LedgerSink()


__all__ = ["Delivery", "DeliveryFailed", "Destination", "Job", "build"]
