"""A journey changed while customers are in it: those in flight finish on the version they entered with,
new entrants follow the new one. And `acrm journeys status` counts what happened, by hand, conversions within
each campaign's attribution window.

Days (UTC): the segment `newcomers` is first evaluated on 11-02 (its history starts: nobody enters), c1 enters
it on 11-03 (known 11-04 00:00), c2 and c3 on 11-05 (known 11-06 00:00). The definition changes after the
tick of 11-05 00:00.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import pytest

from acrm_pipelines.journeys import run
from acrm_pipelines.journeys.facts import cutoff
from acrm_pipelines.journeys.validate import load_journeys

SEGMENTS = """
key: newcomers
rules: {field: city, op: "=", value: new}
"""
V1 = """
key: onboarding
on: {entered: newcomers}
steps:
  - send: mail_a
  - wait: 2d
  - send: mail_b
"""
V2 = """
key: onboarding
on: {entered: newcomers}
steps:
  - send: mail_a
  - wait: 1d
  - send: mail_c
"""
FIRST = date(2026, 11, 2)
CITIES = {  # customer -> the first day they are `new`
    "c1": date(2026, 11, 3),
    "c2": date(2026, 11, 5),
    "c3": date(2026, 11, 5),
}
CONSENT = {"c1": True, "c2": True, "c3": False}
ORDERS = [("o1", "c1", datetime(2026, 11, 8, 12, 0))]  # within 7 days of c1's mail_a (11-04) and mail_b (11-06)


def _features(day: date) -> list[dict]:
    return [
        {"customer_id": c, "city": "new" if day >= first else "old", "email": f"{c}@example.com",
         "consent_email": CONSENT[c]}
        for c, first in CITIES.items()
    ]  # fmt: skip


@pytest.fixture(scope="module")
def changed(tmp_path_factory, set_features, segment_set, record_segments, export_set):
    tmp = tmp_path_factory.mktemp("journey_versions")
    con = duckdb.connect(str(tmp / "db.duckdb"))
    set_features(con, _features(FIRST))
    segments = segment_set(tmp, SEGMENTS)
    exports = export_set(
        tmp,
        [{"key": k, "channel": "email", "campaign": k, "destination": {"type": "csv"}}
         for k in ("mail_a", "mail_c")]
        + [{"key": "mail_b", "channel": "email", "campaign": "mail_b", "destination": {"type": "csv"},
            "attribution_window": "1d"}],
        segments,
    )  # fmt: skip
    con.execute("CREATE SCHEMA staging")
    con.execute(
        "CREATE TABLE staging.stg_crm__orders "
        "(order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, status VARCHAR)"
    )
    con.executemany("INSERT INTO staging.stg_crm__orders VALUES (?, ?, ?, 'completed')", ORDERS)
    folder = tmp / "journeys"
    folder.mkdir()
    for i in range(8):
        day = FIRST + timedelta(days=i)
        if i == 3:  # after the tick of 11-05 00:00: the definition changes
            (folder / "j.yaml").write_text(V2)
        elif i == 0:
            (folder / "j.yaml").write_text(V1)
        journeys = load_journeys([folder], segments, exports, root=tmp)
        set_features(con, _features(day))
        record_segments(con, segments, day)
        run.tick(con, journeys, exports, cutoff(day), tmp / "outbox")
    return con, tmp


def test_in_flight_customers_keep_their_version(changed) -> None:
    con, _ = changed
    versions = dict(con.execute("SELECT customer_id, version FROM journeys.positions").fetchall())
    assert versions["c2"] == versions["c3"] != versions["c1"]
    sends = con.execute("SELECT customer_id, export_key, due_at, status FROM journeys.sends ORDER BY 1, 3").fetchall()
    assert sends == [
        # c1 entered on version 1 (11-04 00:00): its second mail two days later, as version 1 says
        ("c1", "mail_a", datetime(2026, 11, 4), "delivered"),
        ("c1", "mail_b", datetime(2026, 11, 6), "delivered"),
        # c2 and c3 entered on version 2 (11-06 00:00): mail_c one day later; c3 has no e-mail consent
        ("c2", "mail_a", datetime(2026, 11, 6), "delivered"),
        ("c2", "mail_c", datetime(2026, 11, 7), "delivered"),
        ("c3", "mail_a", datetime(2026, 11, 6), "suppressed"),
        ("c3", "mail_c", datetime(2026, 11, 7), "suppressed"),
    ]
    stored = con.execute("SELECT count(*) FROM journeys.versions WHERE journey = 'onboarding'").fetchone()[0]
    assert stored == 2


def test_status_counts_by_hand(changed, acrm) -> None:
    con, tmp = changed
    con.execute("CHECKPOINT")
    env = {
        "ACRM_DUCKDB_PATH": str(tmp / "db.duckdb"),
        "ACRM_SEGMENTS_DIR": str(tmp / "segments"),
        "ACRM_EXPORTS_DIR": str(tmp / "exports"),
        "ACRM_JOURNEYS_DIR": str(tmp / "journeys"),
    }
    con.close()
    done = acrm("journeys", "status", env=env)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert " ".join(lines[0]) == "onboarding: entered 3, in the journey 0, completed 3, exited 0"
    rows = {line[0]: [int(v) for v in line[1:]] for line in lines[2:]}
    # step: waiting, sent, suppressed, converted, exited. c1's order on 11-08 12:00 is within the default 7 days
    # of mail_a (11-04) but not within mail_b's campaign window of 1 day (11-06 00:00 to 11-07 00:00)
    assert rows == {
        "1": [0, 2, 1, 1, 0],  # mail_a: c1, c2 sent; c3 suppressed; c1 converted
        "3": [0, 2, 1, 0, 0],  # mail_b (c1, version 1) and mail_c (c2; c3 suppressed): both named step 3
    }


def test_plan_on_the_command_line_writes_nothing(changed, acrm) -> None:
    _, tmp = changed  # the connection is closed by the status test, which runs first in this module
    env = {
        "ACRM_DUCKDB_PATH": str(tmp / "db.duckdb"),
        "ACRM_SEGMENTS_DIR": str(tmp / "segments"),
        "ACRM_EXPORTS_DIR": str(tmp / "exports"),
        "ACRM_JOURNEYS_DIR": str(tmp / "journeys"),
    }
    before = (tmp / "db.duckdb").read_bytes()
    past = acrm("journeys", "plan", "--as-of", "2026-11-05", env=env)
    assert past.returncode == 0, past.stderr
    assert past.stdout.splitlines() == [
        "A tick at 2026-11-06 00:00 UTC would (nothing is sent or written):",
        "  onboarding: already ticked up to 2026-11-10 00:00:00",  # the last tick: the end of 11-09
    ]
    later = acrm("journeys", "plan", "--at", "2026-11-12 08:00", env=env)
    assert later.stdout.splitlines()[1] == "  onboarding: do nothing"  # everyone has completed
    assert (tmp / "db.duckdb").read_bytes() == before
