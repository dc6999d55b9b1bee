"""Export bookkeeping at scale: one export (full or delta) of N members, two days, timed.

.venv/bin/python bench/exports.py 1000000 full|delta
"""

import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import duckdb
import yaml

from acrm_pipelines.exports.run import run_export
from acrm_pipelines.exports.validate import load_exports
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.segments.history import record
from acrm_pipelines.segments.validate import load_segments

# The fact marts the segment engine and the frequency cap read, empty here.
FACTS = {
    "fct_orders": "order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, total_amount DECIMAL(18,2), "
    "status VARCHAR, store_id VARCHAR, channel VARCHAR",
    "fct_order_lines": "order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, status VARCHAR, store_id VARCHAR, "
    "channel VARCHAR, product_id VARCHAR, product_name VARCHAR, category VARCHAR, brand VARCHAR, quantity BIGINT, "
    "price DECIMAL(18,2), line_amount DECIMAL(18,2)",
    "fct_events": "customer_id VARCHAR, occurred_at TIMESTAMP, event_type VARCHAR, channel VARCHAR, properties VARCHAR",
    "fct_messages": "message_id VARCHAR, customer_id VARCHAR, campaign_id VARCHAR, channel VARCHAR, "
    "sent_at TIMESTAMP, delivered_at TIMESTAMP, opened_at TIMESTAMP, clicked_at TIMESTAMP, "
    "complained_at TIMESTAMP, unsubscribed_at TIMESTAMP",
    "fct_bonus_transactions": "customer_id VARCHAR, occurred_at TIMESTAMP, points DECIMAL(18,2), reason VARCHAR",
}


def segment_set(tmp: Path, text: str):
    (tmp / "segments").mkdir(exist_ok=True)
    (tmp / "segments" / "s.yaml").write_text(text)
    return load_segments([tmp / "segments"], load_catalogue(), root=tmp)


def record_segments(con: duckdb.DuckDBPyConnection, segments, as_of: date) -> None:
    record(con, evaluate(con, segments, as_of), segments.order, {k: segments[k].version() for k in segments.order})


def one_export(tmp: Path, definition: dict, segments):
    (tmp / "exports").mkdir(exist_ok=True)
    (tmp / "exports" / "e.yaml").write_text(yaml.safe_dump(definition, sort_keys=False))
    return load_exports([tmp / "exports"], segments, load_catalogue(), root=tmp)[definition["key"]]


N = int(sys.argv[1])
mode = sys.argv[2]
tmp = Path(tempfile.mkdtemp(prefix="acrm_bench_exports_"))
shutil.rmtree(tmp, ignore_errors=True)
tmp.mkdir()
con = duckdb.connect(str(tmp / "db.duckdb"))
con.execute("CREATE SCHEMA marts")
con.execute(f"""CREATE TABLE marts.customer_features AS SELECT 'c' || lpad(i::VARCHAR, 8, '0') AS customer_id,
  'Ann' AS first_name, 'Lee' AS last_name, 'c' || i || '@x.io' AS email, '+7916' || lpad(i::VARCHAR, 7, '0') AS phone,
  'RU' AS country, 'Moscow' AS city, 10.0::DOUBLE AS bonus_balance, (i % 1000)::DOUBLE AS total_amount,
  true AS consent_email, true AS consent_sms, true AS consent_push, false AS unsubscribed, false AS unsubscribed_email,
  false AS unsubscribed_sms, false AS unsubscribed_push, (i % 100 = 0) AS complained FROM range({N}) t(i)""")
for name, columns in FACTS.items():
    con.execute(f"CREATE TABLE IF NOT EXISTS marts.{name} ({columns})")
segs = segment_set(tmp, "key: buyers\nrules: {field: total_amount, op: '>=', value: 100}\n")
d1, d2 = date(2024, 3, 1), date(2024, 3, 2)
record_segments(con, segs, d1)
export = one_export(
    tmp,
    {
        "key": "f",
        "segment": "buyers",
        "channel": "email",
        "campaign": "c",
        "mode": mode,
        "destination": {"type": "csv"},
        "fields": {"customer_id": "customer_id", "email": "email", "name": "first_name"},
        "frequency_cap": {"max": 3, "per": "7d"},
    },
    segs,
)
for day in (d1, d2):
    if day == d2:
        con.execute("UPDATE marts.customer_features SET total_amount = total_amount + 1")
        record_segments(con, segs, d2)
    t = time.perf_counter()
    r = run_export(con, export, day, tmp / "outbox", f"run-{day}")
    print(day, mode, f"{time.perf_counter() - t:.2f}s", r.counts.get("sent"), r.counts.get("members"))
shutil.rmtree(tmp, ignore_errors=True)
