"""A small DuckDB file with hand-set marts, for segment tests that need no dbt run."""

from __future__ import annotations

from pathlib import Path

import duckdb

from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import SegmentSet, load_segments

FACTS = {
    "fct_orders": "order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, total_amount DECIMAL(18,2), "
    "status VARCHAR, store_id VARCHAR, channel VARCHAR",
    "fct_order_lines": "order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, status VARCHAR, store_id VARCHAR, "
    "channel VARCHAR, "
    "product_id VARCHAR, product_name VARCHAR, category VARCHAR, brand VARCHAR, quantity BIGINT, "
    "price DECIMAL(18,2), line_amount DECIMAL(18,2)",
    "fct_events": "customer_id VARCHAR, occurred_at TIMESTAMP, event_type VARCHAR, channel VARCHAR, properties VARCHAR",
    "fct_messages": "message_id VARCHAR, customer_id VARCHAR, campaign_id VARCHAR, channel VARCHAR, "
    "sent_at TIMESTAMP, delivered_at TIMESTAMP, opened_at TIMESTAMP, clicked_at TIMESTAMP, "
    "complained_at TIMESTAMP, unsubscribed_at TIMESTAMP",
    "fct_bonus_transactions": "customer_id VARCHAR, occurred_at TIMESTAMP, points DECIMAL(18,2), reason VARCHAR",
}


def make_marts(path: Path, features_sql: str) -> duckdb.DuckDBPyConnection:
    """`features_sql` selects the customer_features rows (customer_id plus any catalogue columns)."""
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    con.execute(f"CREATE OR REPLACE TABLE marts.customer_features AS {features_sql}")
    for name, columns in FACTS.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS marts.{name} ({columns})")
    return con


def segment_set(tmp: Path, yaml_text: str) -> SegmentSet:
    folder = tmp / "segments"
    folder.mkdir(exist_ok=True)
    (folder / "s.yaml").write_text(yaml_text)
    return load_segments([folder], load_catalogue(), root=tmp)
