"""analytics.order_attribution and analytics.campaign_funnel on a hand-made landing folder, through the pipeline.

As of 2025-03-10 (cut-off 2025-03-11 00:00). Campaign `spring` (email) uses the default window, 7 days;
campaign `short` (sms) 24 hours, set by an export's `attribution_window`. Every number below is worked out
by hand from docs/analytics.md:

  m1 a spring sent 03-01 10:00, delivered, opened, clicked 03-01 12:30   (send window to 03-08 10:00,
                                                                           click window to 03-08 12:30)
  m2 a short  sent 03-03 10:00, delivered                                 (to 03-04 10:00)
  m3 b spring sent 03-02 09:00, delivered, opened, clicked 03-02 10:00    (to 03-09 09:00; click to 03-09 10:00)
  m4 c spring sent 03-05 08:00, not delivered
  m5 d short  sent 03-04 10:00, delivered, complained and unsubscribed 11:00 (to 03-05 10:00)
  m6 e spring sent 03-06 08:00, delivered 08:01, opened 03-11 08:00 (after the cut-off: not opened yet)

  o1 a 03-03 12:00 100  m1 and m2 by send: m2 is later (last touch) → short; by click → spring
  o2 a 03-04 10:00  20  exactly at m2's window end (included) → short; by click → spring
  o3 a 03-04 10:00:01 30  one second past m2's window → m1 → spring; by click → spring
  o4 b 03-09 09:00  40  exactly at m3's send window end → spring; by click (to 10:00) → spring
  o5 b 03-09 10:00:01 50  past both of m3's windows → not attributed
  o6 b 03-02 09:00  60  at m3's send time: not after it → not attributed
  o7 c 03-06 10:00  70  cancelled → not counted
  o8 d 03-05 09:59:59 80 inside m5's window → short
  o9 a 03-11 00:00  90  at the cut-off: after the as-of day → not counted
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, DagsterInstance

from acrm_pipelines.wiring.resources import DuckDBFile

AS_OF = date(2025, 3, 10)

TABLES = {
    "customers": """\
customer_id,first_name,email,phone,registered_at,consent_email,consent_sms
a,Ann,a@example.com,+79161110001,2024-01-01 10:00:00,true,true
b,Bob,b@example.com,+79161110002,2024-01-01 10:00:00,true,true
c,Cid,c@example.com,+79161110003,2024-01-01 10:00:00,true,true
d,Dan,d@example.com,+79161110004,2024-01-01 10:00:00,true,true
e,Eve,e@example.com,+79161110005,2024-01-01 10:00:00,true,true
""",
    "products": "product_id,name,category,brand\np1,Tea,Tea,X\n",
    "orders": """\
order_id,customer_id,ordered_at,total_amount,status
o1,a,2025-03-03 12:00:00,100.00,completed
o2,a,2025-03-04 10:00:00,20.00,completed
o3,a,2025-03-04 10:00:01,30.00,completed
o4,b,2025-03-09 09:00:00,40.00,completed
o5,b,2025-03-09 10:00:01,50.00,completed
o6,b,2025-03-02 09:00:00,60.00,completed
o7,c,2025-03-06 10:00:00,70.00,cancelled
o8,d,2025-03-05 09:59:59,80.00,completed
o9,a,2025-03-11 00:00:00,90.00,completed
""",
    "order_lines": "order_id,product_id,quantity,price\no1,p1,1,100.00\n",
    "events": "customer_id,occurred_at,event_type,channel,properties\na,2025-03-01 10:00:00,site_visit,site,\n",
    "messages": """\
message_id,customer_id,campaign_id,channel,sent_at,delivered_at,opened_at,clicked_at,complained_at,unsubscribed_at
m1,a,spring,email,2025-03-01 10:00:00,2025-03-01 10:01:00,2025-03-01 12:00:00,2025-03-01 12:30:00,,
m2,a,short,sms,2025-03-03 10:00:00,2025-03-03 10:00:05,,,,
m3,b,spring,email,2025-03-02 09:00:00,2025-03-02 09:00:30,2025-03-02 09:30:00,2025-03-02 10:00:00,,
m4,c,spring,email,2025-03-05 08:00:00,,,,,
m5,d,short,sms,2025-03-04 10:00:00,2025-03-04 10:00:10,,,2025-03-04 11:00:00,2025-03-04 11:00:00
m6,e,spring,email,2025-03-06 08:00:00,2025-03-06 08:01:00,2025-03-11 08:00:00,,,
""",
    "bonus_transactions": "customer_id,occurred_at,points,reason\na,2025-01-01 10:00:00,10,welcome\n",
}

SEGMENTS = """\
key: everyone
title: Everyone
rules: {field: customer_id, op: is_not_null}
---
key: everyone_split
title: Everyone, half held back
rules: {field: customer_id, op: is_not_null}
split: {control: 50%, salt: hand}
"""
# The export that sets campaign `short`'s window; it sends nothing (inactive): only its window matters here.
EXPORTS = """\
key: short_sms
segment: everyone
channel: sms
campaign: short
destination: {type: csv}
attribution_window: 24h
active: false
---
key: spring_holdout
segment: everyone_split
channel: email
campaign: spring
destination: {type: csv}
"""


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory, make_settings, run_pipeline) -> Path:
    tmp = tmp_path_factory.mktemp("analytics")
    landing = tmp / "landing"
    landing.mkdir()
    for name, text in TABLES.items():  # one folder per table, so that a later file is appended (the next day)
        (landing / name).mkdir()
        (landing / name / "part-00000.csv").write_text(text, encoding="utf-8")
    for folder, text in (("segments", SEGMENTS), ("exports", EXPORTS)):
        (tmp / folder).mkdir()
        (tmp / folder / "defs.yaml").write_text(text)
    settings = make_settings(tmp, landing)
    settings = dataclasses.replace(settings, segments_dir=tmp / "segments", exports_dir=tmp / "exports")
    instance = DagsterInstance.ephemeral()
    run_pipeline(settings, AS_OF.isoformat(), instance)
    return settings.duckdb_path, instance


def test_each_order_goes_to_the_latest_message_whose_window_holds_it(hand_run) -> None:
    with duckdb.connect(str(hand_run[0]), read_only=True) as con:
        rows = con.execute(
            "SELECT order_id, send_message_id, send_campaign_id, click_message_id, click_campaign_id, as_of "
            "FROM analytics.order_attribution ORDER BY order_id"
        ).fetchall()
    assert rows == [
        ("o1", "m2", "short", "m1", "spring", AS_OF),
        ("o2", "m2", "short", "m1", "spring", AS_OF),
        ("o3", "m1", "spring", "m1", "spring", AS_OF),
        ("o4", "m3", "spring", "m3", "spring", AS_OF),
        ("o8", "m5", "short", None, None, AS_OF),
    ]


def test_the_funnel_counts_customers_orders_and_rates_by_hand(hand_run) -> None:
    with duckdb.connect(str(hand_run[0]), read_only=True) as con:
        cursor = con.execute("SELECT * FROM analytics.campaign_funnel ORDER BY campaign_id")
        names = [d[0] for d in cursor.description]
        rows = {r[names.index("campaign_id")]: dict(zip(names, r, strict=True)) for r in cursor.fetchall()}
    assert set(rows) == {"short", "spring"}
    spring, short = rows["spring"], rows["short"]
    assert spring == {
        "as_of": AS_OF, "campaign_id": "spring", "channel": "email",
        "sent": 4, "delivered": 3, "opened": 2, "clicked": 2, "complained": 0, "unsubscribed": 0,
        "orders_after_send": 2, "revenue_after_send": Decimal("70.00"),          # o3 30 + o4 40
        "orders_after_click": 4, "revenue_after_click": Decimal("190.00"),       # o1 100 + o2 20 + o3 30 + o4 40
        "open_rate": pytest.approx(2 / 3), "click_rate": pytest.approx(2 / 3),
        "conversion_after_click": 1.0,                                           # a and b bought after a click
    }  # fmt: skip
    assert short == {
        "as_of": AS_OF, "campaign_id": "short", "channel": "sms",
        "sent": 2, "delivered": 2, "opened": 0, "clicked": 0, "complained": 1, "unsubscribed": 1,
        "orders_after_send": 3, "revenue_after_send": Decimal("200.00"),         # o1 100 + o2 20 + o8 80
        "orders_after_click": 0, "revenue_after_click": Decimal("0.00"),
        "open_rate": 0.0, "click_rate": 0.0, "conversion_after_click": None,     # nobody clicked
    }  # fmt: skip


def test_the_funnel_asset_shows_each_campaign_in_its_metadata(hand_run) -> None:
    event = hand_run[1].get_latest_materialization_event(AssetKey("campaign_funnel"))
    metadata = event.asset_materialization.metadata
    assert event.asset_materialization.partition == AS_OF.isoformat()
    assert metadata["campaigns"].value == 2
    assert metadata["spring.email.orders_after_click"].value == 4.0
    assert metadata["short.sms.orders_after_send"].value == 3.0
    assert "| spring | email | 4 | 3 | 2 | 2 | 2 | 4 | 190.00 | 0.667 |" in metadata["funnel"].value


def test_the_hold_out_export_is_measured_but_five_customers_are_not_enough(hand_run) -> None:
    """spring_holdout sends half of `everyone_split` and holds back the other half (its `control` arm). On its
    first date the orders of both groups are yet to come, and 4 customers (d complained: suppressed) are far
    too few for an interval."""
    with duckdb.connect(str(hand_run[0]), read_only=True) as con:
        sent, held = con.execute(
            "SELECT count(*) FILTER (status = 'sent'), count(*) FILTER (status = 'held_back') FROM exports.deliveries "
            "WHERE export_key = 'spring_holdout'"
        ).fetchone()
        rows = con.execute(
            "SELECT export_key, first_day, window_complete, treatment_n, control_n, uplift, note "
            "FROM analytics.campaign_uplift"
        ).fetchall()
    assert sent + held == 4 and held > 0
    assert rows == [("spring_holdout", AS_OF, False, sent, held, None, "not enough data")]


# The next night's file: m7 is dated before the first day's cut-off but lands only now (late). It takes o5 by
# send (03-09 09:30 + 7 days holds 03-09 10:00:01), which nothing took the day before.
LATE_MESSAGE = "m7,b,spring,email,2025-03-09 09:30:00,,,,,\n"
NEXT_DAY = date(2025, 3, 11)


@pytest.fixture(scope="module")
def next_day(hand_run, tmp_path_factory, make_settings, run_pipeline) -> tuple[Path, DagsterInstance]:
    """The first day's file, copied, and its landing folder with m7 appended, run the next day: the incremental
    analytics models recompute b (a new message) and keep the others' rows."""
    db, _ = hand_run
    tmp = tmp_path_factory.mktemp("analytics_next")
    for path in db.parent.iterdir():  # the DuckDB file, its segment state and the YAML
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, tmp / path.name)
    (tmp / "landing" / "messages" / "part-00001-late.csv").write_text(
        TABLES["messages"].splitlines()[0] + "\n" + LATE_MESSAGE, encoding="utf-8"
    )
    settings = make_settings(tmp, tmp / "landing", db=tmp / db.name)
    settings = dataclasses.replace(settings, segments_dir=tmp / "segments", exports_dir=tmp / "exports")
    instance = DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as patch:  # every connection the run opens, and whether dbt was running
        patch.setattr(DuckDBFile, "get_connection", _watched(DuckDBFile.get_connection))
        run_pipeline(settings, NEXT_DAY.isoformat(), instance)
    return settings.duckdb_path, instance


CONNECTIONS: list[bool] = []  # per connection the next day's run opened: was a dbt child of this process alive


def _dbt_children() -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"dbt" in (stat.parent / "cmdline").read_bytes():
                return True
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return False


def _watched(get_connection):
    @contextlib.contextmanager
    def watched(self):
        CONNECTIONS.append(_dbt_children())
        with get_connection(self) as con:
            yield con

    return watched


def test_no_connection_waits_on_a_running_dbt(next_day) -> None:
    """dbt holds the DuckDB file while it builds: the steps read the file before it starts or after it has exited
    (the analytics tables in the funnel's metadata too), never in between, where a connection waits for the lock
    and, on a long build, gives up (a 10M first day failed so)."""
    assert len(CONNECTIONS) > 10  # the run's steps connected, through the watched resource
    assert not any(CONNECTIONS)


def test_the_next_night_attributes_a_late_message_from_the_stored_rows(next_day) -> None:
    """As of 03-11: o5 goes to m7 (send); o9 (03-11 00:00) is now of the history, but a's windows ended
    before it; e's open of 03-11 08:00 now counts. Built incrementally: only b was recomputed."""
    db, instance = next_day
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT order_id, send_message_id, send_campaign_id, click_message_id, as_of "
            "FROM analytics.order_attribution ORDER BY order_id"
        ).fetchall()
        spring = con.execute(
            "SELECT opened, orders_after_send, revenue_after_send, orders_after_click FROM analytics.campaign_funnel "
            "WHERE as_of = ? AND campaign_id = 'spring'",
            [NEXT_DAY],
        ).fetchall()
        first_day = con.execute(
            "SELECT opened, orders_after_send FROM analytics.campaign_funnel "
            "WHERE as_of = ? AND campaign_id = 'spring'",
            [AS_OF],
        ).fetchall()
    assert rows == [
        ("o1", "m2", "short", "m1", NEXT_DAY),
        ("o2", "m2", "short", "m1", NEXT_DAY),
        ("o3", "m1", "spring", "m1", NEXT_DAY),
        ("o4", "m3", "spring", "m3", NEXT_DAY),
        ("o5", "m7", "spring", None, NEXT_DAY),
        ("o8", "m5", "short", None, NEXT_DAY),
    ]
    assert spring == [(3, 3, Decimal("120.00"), 4)]  # o3 30 + o4 40 + o5 50
    assert first_day == [(2, 2)]  # the first day's row stays as it was
    for key in ("order_touches", "campaign_reach"):
        metadata = instance.get_latest_materialization_event(AssetKey(key)).asset_materialization.metadata
        assert (metadata["build"].value, metadata["built_from"].value) == ("incremental", "last build"), key


def test_the_first_night_built_them_in_full(hand_run) -> None:
    metadata = hand_run[1].get_latest_materialization_event(AssetKey("order_touches")).asset_materialization.metadata
    assert (metadata["build"].value, metadata["built_from"].value) == ("full", "no analytics build is recorded")
