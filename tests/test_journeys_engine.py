"""Journeys over three weeks of hand-made days: every send per customer, step and moment computed by hand.

The segments are evaluated and recorded day by day from hand-set features (the city says who is new, active
or lapsed), the events and orders are hand-written rows, and the journeys tick at the end of each day plus
twice during the day. The expected sends below are worked out in the comments from the definitions, the
calendar (2026-11-02 is a Monday) and the time zones (Moscow UTC+3; New York UTC-5 after 1 November).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.csv as pacsv
import pytest
import yaml

from acrm_pipelines.journeys import run
from acrm_pipelines.journeys.facts import cutoff
from acrm_pipelines.journeys.validate import load_journeys

SEGMENTS = """
key: newcomers
rules: {field: city, op: "=", value: new}
---
key: active
rules: {field: city, op: "=", value: active}
---
key: lapsed
rules: {field: city, op: "=", value: lapsed}
---
key: vip
rules: {field: total_amount, op: ">=", value: 1000}
"""

JOURNEYS = """
key: welcome
on: {entered: newcomers}
steps:
  - send: welcome_1
  - wait: 2d
  - send: welcome_2
  - wait: 3d
  - send: welcome_3
exit_when: {event: purchase}
reentry: {after: 10d}
send_between: "09:00-21:00"
send_on: [mon, tue, wed, thu, fri]
---
key: cart
on: {event: cart_abandon}
steps:
  - wait: 1h
  - send: cart_push
  - wait_until: {event: purchase, within: 1d}
    no:
      - send: cart_email
send_between: "09:00-21:00"
---
key: winback
on: {moved: {from: active, to: lapsed}}
steps:
  - branch: {segment: vip}
    yes: [{send: winback_vip}]
    no: [{send: winback_plain}]
"""

EXPORTS = ["welcome_1", "welcome_2", "welcome_3", "cart_email", "winback_vip", "winback_plain"]
FIRST, LAST = date(2026, 11, 2), date(2026, 11, 23)
MSK, NYC = "Europe/Moscow", "America/New_York"


def t(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-{text}")


# customer -> (time zone, consent to e-mail, total amount, {first day: city from that day on})
CUSTOMERS = {
    "c1": (MSK, True, 10, {FIRST: "old", date(2026, 11, 3): "new"}),
    "c2": (NYC, True, 10, {FIRST: "old", date(2026, 11, 4): "new"}),
    "c3": (None, True, 10, {FIRST: "old", date(2026, 11, 5): "new"}),
    "c4": (None, True, 10, {FIRST: "old", date(2026, 11, 3): "new"}),
    "c5": (None, True, 10, {FIRST: "old", date(2026, 11, 3): "new", date(2026, 11, 4): "old",
                             date(2026, 11, 5): "new", date(2026, 11, 14): "old", date(2026, 11, 15): "new"}),
    "c6": (None, True, 10, {FIRST: "old", date(2026, 11, 3): "new", date(2026, 11, 10): "old",
                             date(2026, 11, 12): "new"}),
    "c7": (None, False, 10, {FIRST: "old", date(2026, 11, 3): "new"}),
    "c8": (None, True, 5000, {FIRST: "active", date(2026, 11, 5): "lapsed"}),
    "c9": (None, True, 10, {FIRST: "active", date(2026, 11, 5): "lapsed"}),
    "c10": (None, True, 10, {FIRST: "old", date(2026, 11, 5): "lapsed"}),
    "c11": (MSK, True, 10, {FIRST: "old"}),
    "c12": (None, True, 10, {FIRST: "old"}),
}  # fmt: skip
EVENTS = [  # customer, time, type
    ("c11", t("11-10 17:00"), "cart_abandon"),
    ("c12", t("11-10 10:00"), "cart_abandon"),
    ("c12", t("11-10 12:00"), "cart_abandon"),  # in the journey then: not taken; and re-entry is never
]
ORDERS = [("o1", "c4", t("11-05 15:00")), ("o2", "c12", t("11-10 20:00"))]

# (customer, export, due) of every send, worked out by hand.
EXPECTED = {
    # c1 (Moscow) enters on 11-03's change, known at 11-04 00:00 UTC = 03:00 Wednesday in Moscow: the first
    # e-mail waits for 09:00 MSK = 06:00 UTC; two days later is Friday 09:00 MSK; three days later Monday.
    ("c1", "welcome_1", t("11-04 06:00")), ("c1", "welcome_2", t("11-06 06:00")), ("c1", "welcome_3", t("11-09 06:00")),
    # c2 (New York) enters at 11-05 00:00 UTC = Wednesday 19:00 local, inside the hours: at once; two days later
    # is 11-07 00:00 UTC, a Saturday in UTC but Friday 19:00 in New York: sent then.
    ("c2", "welcome_1", t("11-05 00:00")), ("c2", "welcome_2", t("11-07 00:00")), ("c2", "welcome_3", t("11-10 00:00")),
    # c3 (no zone: UTC) enters Friday 11-06 00:00 -> 09:00; the two-day wait ends Sunday 11-08 09:00, so the
    # second e-mail waits for Monday 09:00; three days later is Thursday 11-12 09:00.
    ("c3", "welcome_1", t("11-06 09:00")), ("c3", "welcome_2", t("11-09 09:00")), ("c3", "welcome_3", t("11-12 09:00")),
    # c4 buys on 11-05 at 15:00, during the two-day wait: exits, nothing more.
    ("c4", "welcome_1", t("11-04 09:00")),
    # c5 enters 11-04 00:00; its re-entry known 11-06 comes while in the journey (not taken); it completes on
    # 11-09; enters again 11-16 00:00 (10 days after 11-04 have passed): Monday, Wednesday, then Saturday
    # 11-21 moves to Monday 11-23.
    ("c5", "welcome_1", t("11-04 09:00")), ("c5", "welcome_2", t("11-06 09:00")), ("c5", "welcome_3", t("11-09 09:00")),
    ("c5", "welcome_1", t("11-16 09:00")), ("c5", "welcome_2", t("11-18 09:00")), ("c5", "welcome_3", t("11-23 09:00")),
    # c6 completes on 11-09 and enters again at 11-13 00:00, under 10 days after 11-04: not taken.
    ("c6", "welcome_1", t("11-04 09:00")), ("c6", "welcome_2", t("11-06 09:00")), ("c6", "welcome_3", t("11-09 09:00")),
    # c7 has no e-mail consent: the same moments, suppressed (below), and the journey goes on.
    ("c7", "welcome_1", t("11-04 09:00")), ("c7", "welcome_2", t("11-06 09:00")), ("c7", "welcome_3", t("11-09 09:00")),
    # c8 and c9 move from active to lapsed on 11-05 (known 11-06 00:00); c8 is a vip on 11-05. No quiet hours.
    ("c8", "winback_vip", t("11-06 00:00")), ("c9", "winback_plain", t("11-06 00:00")),
    # c11 (Moscow) abandons at 17:00 UTC; an hour later is 21:00 MSK, the hours' end: the push waits for 09:00
    # MSK = 06:00 UTC the next day; no purchase within a day: the e-mail at 11-12 06:00 UTC (09:00 MSK).
    ("c11", "cart_push", t("11-11 06:00")), ("c11", "cart_email", t("11-12 06:00")),
    # c12 abandons at 10:00: push at 11:00; buys at 20:00, within the day: no e-mail.
    ("c12", "cart_push", t("11-10 11:00")),
}  # fmt: skip
# c10 entered lapsed without leaving active: no winback.


def _features(day: date) -> list[dict]:
    rows = []
    for customer, (zone, consent, amount, cities) in CUSTOMERS.items():
        city = cities[max(d for d in cities if d <= day)]
        rows.append(
            {
                "customer_id": customer, "city": city, "total_amount": float(amount), "timezone": zone,
                "email": f"{customer}@example.com", "consent_email": consent, "consent_push": True,
            }
        )  # fmt: skip
    return rows


def _ticks(intraday: bool) -> list[datetime]:
    """The end of each day, and (with `intraday`) the sensor's ticks during two days."""
    moments = [cutoff(FIRST + timedelta(days=i)) for i in range((LAST - FIRST).days + 1)]
    if intraday:
        moments += [t("11-10 11:30"), t("11-11 07:00"), t("11-04 03:00"), t("11-06 06:00")]
    return sorted(moments)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, set_features, segment_set, record_segments, export_set):
    played: dict = {}

    def play(intraday: bool, stop: datetime | None = None):
        if (intraday, stop) not in played:
            played[(intraday, stop)] = _play(intraday, stop)
        return played[(intraday, stop)]

    def _play(intraday: bool, stop: datetime | None):
        tmp = tmp_path_factory.mktemp("journeys")
        con = duckdb.connect(str(tmp / "db.duckdb"))
        set_features(con, _features(FIRST))
        segments = segment_set(tmp, SEGMENTS)
        exports = export_set(
            tmp,
            [
                {"key": k, "channel": "email", "campaign": k, "destination": {"type": "csv"},
                 "fields": {"customer_id": "customer_id", "email": "email"}}
                for k in EXPORTS
            ] + [{"key": "cart_push", "channel": "push", "campaign": "cart",
                  "destination": {"type": "csv"}}],
            segments,
        )  # fmt: skip
        (tmp / "journeys").mkdir()
        (tmp / "journeys" / "j.yaml").write_text(JOURNEYS)
        journeys = load_journeys([tmp / "journeys"], segments, exports, root=tmp)
        con.execute("CREATE SCHEMA staging")
        con.execute(
            "CREATE TABLE staging.stg_crm__events (customer_id VARCHAR, occurred_at TIMESTAMP, event_type VARCHAR)"
        )
        con.executemany("INSERT INTO staging.stg_crm__events VALUES (?, ?, ?)", EVENTS)
        con.execute(
            "CREATE TABLE staging.stg_crm__orders (order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, "
            "status VARCHAR)"
        )
        con.executemany("INSERT INTO staging.stg_crm__orders VALUES (?, ?, ?, 'completed')", ORDERS)
        recorded: set[date] = set()
        for now in _ticks(intraday):
            if stop is not None and now > stop:
                break
            day = (now - timedelta(days=1)).date()
            if now == cutoff(day) and day not in recorded:
                set_features(con, _features(day))
                record_segments(con, segments, day)
                recorded.add(day)
            run.tick(con, journeys, exports, now, tmp / "outbox")
        return con, tmp, journeys, exports

    return play


def _sends(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "SELECT customer_id, export_key, due_at, status, reason, send_key FROM journeys.sends ORDER BY 1, 3"
    ).fetchall()


def test_every_send_as_computed_by_hand(scenario) -> None:
    con, tmp, _, _ = scenario(intraday=True)
    sends = _sends(con)
    assert {(c, e, due) for c, e, due, *_ in sends} == EXPECTED
    assert len(sends) == len(EXPECTED)  # one row per send: none twice
    suppressed = {(c, e) for c, e, _, status, reason, _ in sends if status == "suppressed"}
    assert suppressed == {("c7", "welcome_1"), ("c7", "welcome_2"), ("c7", "welcome_3")}
    assert {reason for c, *_, reason, _ in sends if c == "c7"} == {"no_consent"}
    assert {status for c, _, _, status, _, _ in sends if c != "c7"} == {"delivered"}
    # Each delivered send is in exactly one outbox file, once, with its key and fields.
    in_files: list[dict] = []
    for path in sorted((tmp / "outbox" / "journeys").rglob("*.csv")):
        in_files += pacsv.read_csv(path).to_pylist()
    delivered = {key: (c, e) for c, e, _, status, _, key in sends if status == "delivered"}
    assert sorted(r["send_key"] for r in in_files) == sorted(delivered)
    for row in in_files:
        if "email" in row:
            assert row["email"] == f"{row['customer_id']}@example.com"


def test_exits_and_entries(scenario) -> None:
    con, *_ = scenario(intraday=True)
    rows = con.execute(
        "SELECT journey, customer_id, entry_no, entered_at, status, ended_at, reason FROM journeys.positions "
        "ORDER BY 1, 2, 3"
    ).fetchall()
    by = {(j, c, n): (entered, status, ended, reason) for j, c, n, entered, status, ended, reason in rows}
    assert by[("welcome", "c4", 1)] == (t("11-04 00:00"), "exited", t("11-05 15:00"), "event purchase")
    assert by[("welcome", "c5", 2)] == (t("11-16 00:00"), "completed", t("11-23 09:00"), None)
    assert ("welcome", "c6", 2) not in by  # re-entry under 10 days: not taken
    assert by[("cart", "c12", 1)] == (t("11-10 10:00"), "completed", t("11-10 20:00"), None)
    assert ("cart", "c12", 2) not in by  # abandoned again while in the journey; re-entry never
    assert {c for j, c, _ in by if j == "winback"} == {"c8", "c9"}


def test_the_outcome_does_not_depend_on_how_often_ticks_run(scenario) -> None:
    """Nightly ticks only: the same sends at the same moments, with the same idempotency keys."""
    often, *_ = scenario(intraday=True)
    nightly, *_ = scenario(intraday=False)
    assert [r[:3] + r[5:] for r in _sends(nightly)] == [r[:3] + r[5:] for r in _sends(often)]


def test_plan_writes_nothing_and_a_replayed_tick_sends_nothing_new(scenario) -> None:
    con, tmp, journeys, exports = scenario(intraday=False, stop=t("11-06 00:00"))
    before = _sends(con)
    positions = con.execute("SELECT * FROM journeys.positions ORDER BY ALL").fetchall()
    plans = {p.journey: p for p in run.plan(con, journeys, t("11-07 00:00"))}
    # c1, c4-c7 reached their second e-mail on 11-06; c2's comes 11-07 00:00; c3's first on 11-06 09:00
    planned = {(s.customer_id, s.export_key, s.due_at) for s in plans["welcome"].sends}
    assert planned == {
        ("c1", "welcome_2", t("11-06 06:00")), ("c3", "welcome_1", t("11-06 09:00")),
        ("c5", "welcome_2", t("11-06 09:00")), ("c6", "welcome_2", t("11-06 09:00")),
        ("c7", "welcome_2", t("11-06 09:00")), ("c2", "welcome_2", t("11-07 00:00")),
    }  # fmt: skip
    assert _sends(con) == before
    assert con.execute("SELECT * FROM journeys.positions ORDER BY ALL").fetchall() == positions
    # A tick at or before the last one (a replay, a backfilled day) does nothing.
    ticked = run.tick(con, journeys, exports, t("11-06 00:00"), tmp / "outbox")
    assert all(x.plan.skipped for x in ticked) and _sends(con) == before
    rows = json.loads(con.execute("SELECT row FROM journeys.sends WHERE customer_id = 'c1'").fetchone()[0])
    assert rows == {"customer_id": "c1", "email": "c1@example.com"}


# Exports for the validation tests: one a journey may not send (it has a segment), one it cannot (bonus).
CHECKED_EXPORTS = [
    {"key": "mail", "segment": "newcomers", "channel": "email", "campaign": "m", "destination": {"type": "csv"}},
    {"key": "points", "channel": "other", "campaign": "p", "destination": {"type": "bonus", "points": 5}},
]


def test_definition_errors_name_file_line_and_field(tmp_path, segment_set, export_set) -> None:
    segments = segment_set(tmp_path, SEGMENTS)
    exports = export_set(tmp_path, CHECKED_EXPORTS, segments)
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "bad.yaml").write_text(
        yaml.safe_dump(
            {
                "key": "bad",
                "on": {"entered": "newcommers"},
                "steps": [
                    {"send": "mial"},
                    {"wait": "3x"},
                    {"branch": {"segment": "nobody"}, "yes": [{"send": "points"}]},
                    {"wait": "1d", "send": "mail"},
                ],
                "send_between": "21:00-09:00",
                "timezone": "Mars/Olympus",
            },
            sort_keys=False,
        )
    )
    with pytest.raises(Exception) as caught:
        load_journeys([folder], segments, exports, root=tmp_path)
    text = str(caught.value)
    # yaml.safe_dump writes `'on':` quoted, so it stays a key; the steps start on line 4
    for expected in [
        "steps[1].wait: duration '3x'",
        "send_between: send_between '21:00-09:00': the start must be before the end",
        "timezone: unknown time zone 'Mars/Olympus'",
        "steps[3]: a step is one of send, wait, wait_until or branch",
    ]:
        assert expected in text, text
    assert all(str(Path("journeys/bad.yaml")) in line for line in text.splitlines())


def test_reference_errors(tmp_path, segment_set, export_set) -> None:
    segments = segment_set(tmp_path, SEGMENTS)
    exports = export_set(tmp_path, CHECKED_EXPORTS, segments)
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "refs.yaml").write_text(
        "key: refs\n"
        "on: {entered: newcommers}\n"
        "steps:\n"
        "  - send: mial\n"
        "  - branch: {segment: nobody}\n"
        "    yes: [{send: points}]\n"
        "exit_when: {segment: vipp}\n"
    )
    with pytest.raises(Exception) as caught:
        load_journeys([folder], segments, exports, root=tmp_path)
    lines = str(caught.value).splitlines()
    assert lines == [
        "journeys/refs.yaml:2: on.entered: unknown segment 'newcommers' (did you mean: newcomers)",
        "journeys/refs.yaml:4: steps[0].send: unknown export 'mial' (did you mean: mail)",
        "journeys/refs.yaml:5: steps[1].branch.segment: unknown segment 'nobody'",
        "journeys/refs.yaml:6: steps[1].yes[0].send: export 'points' goes to bonus; journeys send through csv, "
        "parquet and webhook exports for now",
        "journeys/refs.yaml:7: exit_when[0].segment: unknown segment 'vipp' (did you mean: vip)",
    ]
