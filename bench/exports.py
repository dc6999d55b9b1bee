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

from acrm_pipelines.exports.run import run_export
from tests.export_fixtures import one_export, record_segments
from tests.segment_fixtures import FACTS, segment_set

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
