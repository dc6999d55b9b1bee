"""The delivery log of one export run: every member's outcome from what the destination reported.

`exports.deliveries` is decided in DuckDB with shortcuts for the common case (a destination that confirms
exactly the rows it was given, nothing rejected, skipped or batched). Each case below is written out by
hand from the rules in exports/run.py's docstring, and the same report given as a Python list (the
general path, with every join) must log the same rows as the Arrow column that takes the shortcut.
"""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pytest

from acrm_pipelines.exports.audience import ensure_log
from acrm_pipelines.exports.destinations.base import Delivery
from acrm_pipelines.exports.run import _log

DAY = date(2026, 3, 1)
EXPORT = SimpleNamespace(key="k", channel="email", campaign="spring", hold_out_arm="control")
# customer -> (arm, decision) as select_audience decides it
MEMBERS = {
    "c1": (None, "no_consent"),
    "c2": ("control", "held_back"),
    "c3": ("test", "deliver"),
    "c4": ("test", "deliver"),
    "c5": ("test", "deliver"),
    "c6": ("test", "deliver"),
    "c7": ("test", "deliver"),
}
UNCHANGED = ("unchanged", "delta: already at the destination", None)
NOT_CONFIRMED = ("failed", "not confirmed by the destination", "add")


def members() -> pa.Table:
    ids = list(MEMBERS)
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.string()),
            "arm": pa.array([MEMBERS[c][0] for c in ids], pa.string()),
            "decision": pa.array([MEMBERS[c][1] for c in ids], pa.string()),
        }
    )


def logged(to_send: list[str], delivery: Delivery, removes: list[str]) -> dict[str, tuple]:
    con = duckdb.connect()
    ensure_log(con)
    rows = pa.table({"customer_id": pa.array(to_send, pa.string())})
    counts = _log(con, EXPORT, DAY, "run-1", members(), rows, delivery, pa.array(removes, pa.string()))
    got = con.execute(
        "SELECT customer_id, decision, status, reason, action, batch_key, export_key, as_of, run_id, channel, "
        "campaign FROM exports.deliveries ORDER BY customer_id"
    ).fetchall()
    assert {r[6:] for r in got} == {("k", DAY, "run-1", "email", "spring")}
    by_status: dict[str, int] = {}
    for r in got:
        by_status[r[2]] = by_status.get(r[2], 0) + 1
    assert {k: v for k, v in counts.items() if k in by_status} == by_status
    assert counts["members"] == len(MEMBERS) and counts["suppressed.no_consent"] == 1
    return {r[0]: r[1:6] for r in got}


FIXED = {  # the same in every case: suppression and the hold-out come before what the destination said
    "c1": ("no_consent", "suppressed", "no_consent", None, None),
    "c2": ("held_back", "held_back", "control", None, None),
}


def test_full_mode_all_confirmed_every_deliverable_member_is_sent() -> None:
    to_send = ["c3", "c4", "c5", "c6", "c7"]
    expected = FIXED | {c: ("deliver", "sent", None, "add", None) for c in to_send}
    for sent in (pa.chunked_array([pa.array(to_send)]), list(to_send)):  # the shortcut and the joins
        assert logged(to_send, Delivery("f.csv", sent=sent), []) == expected


def test_delta_confirmed_the_rest_is_unchanged_and_removals_are_logged() -> None:
    to_send = ["c4", "c6"]  # c3, c5, c7 are at the destination already
    expected = FIXED | {
        "c3": ("deliver", *UNCHANGED, None),
        "c4": ("deliver", "sent", None, "add", None),
        "c5": ("deliver", *UNCHANGED, None),
        "c6": ("deliver", "sent", None, "add", None),
        "c7": ("deliver", *UNCHANGED, None),
        "g1": ("removed", "removed", None, "remove", None),
        "g2": ("removed", "failed", None, "remove", None),
    }
    for sent in (pa.chunked_array([pa.array(to_send)]), list(to_send)):
        delivery = Delivery("f.csv", sent=sent, removed=["g1"])
        assert logged(to_send, delivery, ["g1", "g2"]) == expected


@pytest.mark.parametrize("as_arrow", [False, True])
def test_rejected_skipped_unconfirmed_and_batches(as_arrow: bool) -> None:
    to_send = ["c3", "c4", "c5", "c6", "c7"]
    sent = ["c7", "c3"]  # confirmed out of order, and only some
    delivery = Delivery(
        "https://hooks.example/x",
        sent=pa.chunked_array([pa.array(sent)]) if as_arrow else sent,
        removed=["g1"],
        rejected={"c4": "invalid e-mail"},
        skipped={"c5": "already issued"},
        batch_of={"c3": "b1", "c4": "b1", "c6": "b2", "c7": "b2", "g1": "b3"},
    )
    expected = FIXED | {
        "c3": ("deliver", "sent", None, "add", "b1"),
        "c4": ("deliver", "rejected", "invalid e-mail", "add", "b1"),
        "c5": ("deliver", "skipped", "already issued", None, None),
        "c6": ("deliver", *NOT_CONFIRMED, "b2"),
        "c7": ("deliver", "sent", None, "add", "b2"),
        "g1": ("removed", "removed", None, "remove", "b3"),
    }
    assert logged(to_send, delivery, ["g1"]) == expected


def test_a_rerun_replaces_the_days_log() -> None:
    con = duckdb.connect()
    ensure_log(con)
    table, rows = members(), pa.table({"customer_id": pa.array(["c3"], pa.string())})
    for run_id in ("run-1", "run-2"):
        _log(con, EXPORT, DAY, run_id, table, rows, Delivery("f.csv", sent=["c3"]), pa.array([], pa.string()))
    got = con.execute("SELECT run_id, count(*) FROM exports.deliveries GROUP BY 1").fetchall()
    assert got == [("run-2", len(MEMBERS))]
