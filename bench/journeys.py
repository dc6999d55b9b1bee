"""Journey ticks on a bench/run.py work folder (its DuckDB file copied, never written): three journeys on the
generated segments and the demo events, ticked at the end of the last recorded day, 12 hours later and a day
later. Prints each tick's counts, seconds and peak memory.

.venv/bin/python bench/run.py --customers 1000000 --segments 1000 --exports 20 --skip-pandas --work /tmp/bench1m
.venv/bin/python bench/journeys.py /tmp/bench1m
"""

import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import duckdb

from acrm_pipelines.exports.validate import load_exports
from acrm_pipelines.journeys import run
from acrm_pipelines.journeys.facts import cutoff
from acrm_pipelines.journeys.validate import load_journeys
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import load_segments

src = Path(sys.argv[1])
work = Path(tempfile.mkdtemp(prefix="acrm-journeys-bench-"))
shutil.copy(src / "acrm.duckdb", work / "acrm.duckdb")
shutil.copytree(src / "acrm.duckdb.segment-state", work / "acrm.duckdb.segment-state")
(work / "exports").mkdir()
(work / "journeys").mkdir()
(work / "exports" / "j.yaml").write_text("""key: j_mail
channel: email
campaign: j-mail
destination: {type: csv}
fields: {customer_id: customer_id, email: email, name: first_name}
frequency_cap: {max: 5, per: 7d}
---
key: j_push
channel: push
campaign: j-push
destination: {type: csv}
""")
(work / "journeys" / "j.yaml").write_text("""key: recency_series
on: {entered: s00001}
steps: [{send: j_mail}, {wait: 1d}, {send: j_mail}]
exit_when: {event: purchase}
send_between: "09:00-21:00"
timezone: Europe/Moscow
---
key: cart
on: {event: cart_abandon}
steps:
  - wait: 1h
  - send: j_push
  - wait_until: {event: purchase, within: 1d}
    no: [{send: j_mail}]
send_between: "09:00-21:00"
---
key: openers_left
on: {exited: s00000}
steps:
  - branch: {segment: s00002}
    yes: [{send: j_mail}]
    no: [{send: j_push}]
""")
segments = load_segments([src / "segments"], load_catalogue(), root=src)
exports = load_exports([src / "exports", work / "exports"], segments, load_catalogue(), root=work, allowed_hosts=())
journeys = load_journeys([work / "journeys"], segments, exports, root=work)
con = duckdb.connect(str(work / "acrm.duckdb"), config={"memory_limit": "8GB"})
day = con.execute("SELECT max(as_of) FROM segments.evaluations").fetchone()[0]
print("day", day)
for now in (cutoff(day), cutoff(day) + timedelta(hours=12), cutoff(day) + timedelta(days=1)):
    start = time.perf_counter()
    ticked = run.tick(con, journeys, exports, now, work / "outbox")
    seconds = time.perf_counter() - start
    for t in ticked:
        print(f"{now} {t.key:<15} {t.counts()} delivered={sum(t.delivered.values())}")
    print(f"tick at {now}: {seconds:.1f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
print(con.execute("SELECT journey, status, count(*) FROM journeys.sends GROUP BY ALL ORDER BY ALL").fetchall())
con.close()
shutil.rmtree(work)
