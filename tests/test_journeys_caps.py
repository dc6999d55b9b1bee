"""Frequency caps across journeys and campaigns: a journey's send respects its export's cap, counting the
loaded messages and every send logged before it (by exports and journeys), and a nightly export's cap counts
the journeys' sends. Worked out by hand below.

`nudge` (e-mail, at most 2 in 7 days) is sent by the journey on entering `newcomers`, a day later, and a day
after that. c1 and c2 enter on 11-03 (known 11-04 00:00); c1 had a loaded e-mail on 11-01; c3 is new from
the segment's first day (its history starts there: no entry).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import pytest

from acrm_pipelines.exports.audience import select_audience
from acrm_pipelines.journeys import run
from acrm_pipelines.journeys.facts import cutoff
from acrm_pipelines.journeys.validate import load_journeys

SEGMENTS = """
key: newcomers
rules: {field: city, op: "=", value: new}
"""
JOURNEY = """
key: nudges
on: {entered: newcomers}
steps:
  - send: nudge
  - wait: 1d
  - send: nudge
  - wait: 1d
  - send: nudge
"""
FIRST = date(2026, 11, 2)
NEW_FROM = {"c1": date(2026, 11, 3), "c2": date(2026, 11, 3), "c3": FIRST}
CAP = {"max": 2, "per": "7d"}


def _features(day: date) -> list[dict]:
    return [
        {"customer_id": c, "city": "new" if day >= first else "old", "email": f"{c}@example.com", "consent_email": True}
        for c, first in NEW_FROM.items()
    ]


@pytest.fixture(scope="module")
def capped(tmp_path_factory, set_features, segment_set, record_segments, export_set):
    tmp = tmp_path_factory.mktemp("journey_caps")
    con = duckdb.connect(str(tmp / "db.duckdb"))
    set_features(con, _features(FIRST))
    con.execute(
        "INSERT INTO marts.fct_messages (customer_id, channel, sent_at) VALUES ('c1', 'email', '2026-11-01 12:00')"
    )
    segments = segment_set(tmp, SEGMENTS)
    exports = export_set(
        tmp,
        [{"key": "nudge", "channel": "email", "campaign": "nudge", "destination": {"type": "csv"},
          "frequency_cap": CAP},
         {"key": "promo", "segment": "newcomers", "channel": "email", "campaign": "promo",
          "destination": {"type": "csv"}, "frequency_cap": CAP}],
        segments,
    )  # fmt: skip
    (tmp / "journeys").mkdir()
    (tmp / "journeys" / "j.yaml").write_text(JOURNEY)
    journeys = load_journeys([tmp / "journeys"], segments, exports, root=tmp)
    for i in range(5):
        day = FIRST + timedelta(days=i)
        set_features(con, _features(day))
        record_segments(con, segments, day)
        run.tick(con, journeys, exports, cutoff(day), tmp / "outbox")
    return con, exports


def test_a_journey_send_respects_its_exports_cap(capped) -> None:
    con, _ = capped
    sends = con.execute("SELECT customer_id, due_at, status, reason FROM journeys.sends ORDER BY 1, 2").fetchall()
    assert sends == [
        # c1: the loaded e-mail of 11-01 and the first nudge make 2 in the 7 days before the second and third
        ("c1", datetime(2026, 11, 4), "delivered", None),
        ("c1", datetime(2026, 11, 5), "suppressed", "frequency_cap"),
        ("c1", datetime(2026, 11, 6), "suppressed", "frequency_cap"),
        # c2: two nudges, then capped
        ("c2", datetime(2026, 11, 4), "delivered", None),
        ("c2", datetime(2026, 11, 5), "delivered", None),
        ("c2", datetime(2026, 11, 6), "suppressed", "frequency_cap"),
    ]
    logged = con.execute(
        "SELECT customer_id, as_of, batch_key FROM exports.deliveries WHERE export_key = 'nudge' ORDER BY 1, 2"
    ).fetchall()
    keys = dict(
        ((c, d.date()), k)
        for c, d, k in con.execute("SELECT customer_id, due_at, send_key FROM journeys.sends").fetchall()
    )
    assert logged == [(c, d, keys[(c, d)]) for c, d in [("c1", date(2026, 11, 4)), ("c2", date(2026, 11, 4)),
                                                         ("c2", date(2026, 11, 5))]]  # fmt: skip


def test_a_nightly_exports_cap_counts_journey_sends(capped) -> None:
    con, exports = capped
    # promo on 11-06: its 7 days run from 10-31 00:00; c1 has the loaded e-mail and a nudge (2), c2 two nudges
    # (2): both at the cap; c3 has none
    audience = select_audience(con, exports["promo"], date(2026, 11, 6))
    decisions = dict(
        zip(audience.table["customer_id"].to_pylist(), audience.table["decision"].to_pylist(), strict=True)
    )
    assert decisions == {"c1": "frequency_cap", "c2": "frequency_cap", "c3": "deliver"}
