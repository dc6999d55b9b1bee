"""The webhook destination against a real HTTP receiver on 127.0.0.1 that fails on purpose.

The receiver answers from a plan `(batch index, attempt) -> (status, delay, body)`: the batch index is the
order in which an `Idempotency-Key` was first seen, the attempt counts the requests with that key. It
keeps the first successful body of every key and answers repeats with 200 without counting them again,
the way a receiver that honours idempotency keys does. Expected batches, keys, statuses and counts are
computed in the tests from the hand-set features, not read back from the engine.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from acrm_pipelines.exports.destinations import DeliveryFailed
from acrm_pipelines.exports.run import run_export

DAY1 = date(2024, 3, 1)
DAY2 = date(2024, 3, 2)
SLOW = 1.0  # seconds the receiver sleeps on a "slow" attempt: well beyond the client's timeout
CLIENT_TIMEOUT = 0.3
SERVER_LIFETIME = 60.0  # the receiver shuts itself down after this, whatever happens to the test

Plan = Callable[[int, int], tuple[int, float, str]]


def always_ok(index: int, attempt: int) -> tuple[int, float, str]:
    return 200, 0.0, "ok"


@dataclass
class Request:
    key: str | None
    attempt: int
    authorization: str | None
    body: dict


@dataclass
class Receiver:
    url: str = ""
    plan: Plan = always_ok
    lock: threading.Lock = field(default_factory=threading.Lock)
    idle: threading.Condition = field(default_factory=threading.Condition)
    in_flight: int = 0
    requests: list[Request] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    index: dict[str, int] = field(default_factory=dict)  # key -> order of first arrival
    delivered: dict[str, dict] = field(default_factory=dict)  # key -> the body that was accepted first
    duplicates: int = 0

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait for requests still being processed (a slow attempt the client already gave up on)."""
        with self.idle:
            assert self.idle.wait_for(lambda: self.in_flight == 0, timeout), "the receiver is still busy"

    def customers(self, action: str = "add") -> list[str]:
        """Every customer accepted once per key (a customer in two keys would appear twice)."""
        return [r["customer_id"] for b in self.delivered.values() if b["action"] == action for r in b["rows"]]

    def key_of(self) -> dict[str, str]:
        return {r["customer_id"]: key for key, b in self.delivered.items() for r in b["rows"]}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        rec = self.server.receiver
        with rec.idle:
            rec.in_flight += 1
        try:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers.get("Idempotency-Key")
            with rec.lock:
                index = rec.index.setdefault(key, len(rec.index))
                rec.attempts[key] += 1
                attempt = rec.attempts[key]
                rec.requests.append(Request(key, attempt, self.headers.get("Authorization"), body))
            status, delay, text = rec.plan(index, attempt)
            if delay:
                time.sleep(delay)
            if status < 300:
                with rec.lock:
                    if key in rec.delivered:
                        rec.duplicates += 1
                        text = "duplicate"
                    else:
                        rec.delivered[key] = body
            self._answer(status, text)
        finally:
            with rec.idle:
                rec.in_flight -= 1
                rec.idle.notify_all()

    def _answer(self, status: int, text: str) -> None:
        data = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away: it retries with the same key

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the signature of the base class
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: Receiver

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hung up on a slow answer is expected here


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    deadline = threading.Timer(SERVER_LIFETIME, server.shutdown)
    deadline.daemon = True
    deadline.start()
    try:
        yield server.receiver
    finally:
        deadline.cancel()
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- data ----------------------------------------------------------------------------------------------

SEGMENT = "key: buyers\nrules: {field: total_amount, op: '>=', value: 50}\n"
N = 1000
BATCH = 37


def cid(i: int) -> str:
    return f"c{i:04d}"


def customer(i: int, amount: float | None = None, consent: bool | None = True, unsubscribed: bool = False) -> dict:
    return {
        "customer_id": cid(i),
        "email": f"{cid(i)}@example.org",
        "total_amount": float(i) if amount is None else amount,
        "consent_email": consent,
        "unsubscribed_email": unsubscribed,
    }


def consent_of(i: int) -> bool | None:
    if i % 7 == 0:
        return False
    if i % 13 == 0:
        return None  # unknown consent is no consent
    return True


def population() -> list[dict]:
    return [customer(i, consent=consent_of(i), unsubscribed=i % 11 == 0) for i in range(N)]


# By hand: members have total_amount = i >= 50; no consent (False or null) comes before the opt-out.
MEMBERS = [i for i in range(50, N)]
NO_CONSENT = {cid(i) for i in MEMBERS if i % 7 == 0 or i % 13 == 0}
UNSUBSCRIBED = {cid(i) for i in MEMBERS if i % 11 == 0} - NO_CONSENT
DELIVERABLE = sorted({cid(i) for i in MEMBERS} - NO_CONSENT - UNSUBSCRIBED)
CHUNKS = [DELIVERABLE[k : k + BATCH] for k in range(0, len(DELIVERABLE), BATCH)]


def export_def(url: str, key: str = "hook", **destination) -> dict:
    return {
        "key": key,
        "segment": "buyers",
        "channel": "email",
        "campaign": "spring-24",
        "destination": {"type": "webhook", "url": url, "batch_size": BATCH, "backoff_seconds": 0.01}
        | {"timeout_seconds": CLIENT_TIMEOUT}
        | destination,
        "fields": {"customer_id": "customer_id", "email": "email", "amount": "total_amount"},
    }


def log_rows(con, key: str, as_of: date) -> dict[tuple[str, str | None], tuple]:
    """(customer, action) -> (status, reason, batch_key, decision) from exports.deliveries."""
    rows = con.execute(
        "SELECT customer_id, action, status, reason, batch_key, decision, run_id FROM exports.deliveries "
        "WHERE export_key = ? AND as_of = ?",
        [key, as_of],
    ).fetchall()
    out = {(r[0], r[1]): r[2:] for r in rows}
    assert len(out) == len(rows), "one log row per customer and action"
    return out


def runs(con, key: str) -> list[tuple]:
    return con.execute(
        "SELECT run_id, status, error FROM exports.runs WHERE export_key = ? ORDER BY started_at, run_id", [key]
    ).fetchall()


def at_destination(con, key: str) -> set[str]:
    return {
        r[0] for r in con.execute("SELECT customer_id FROM exports.audience WHERE export_key = ?", [key]).fetchall()
    }


# --- (a) exactly once through 500s, 503s and timeouts ----------------------------------------------------


def flaky(index: int, attempt: int) -> tuple[int, float, str]:
    if index % 3 == 2 and attempt == 1:
        return 500, 0.0, "internal error"
    if index % 6 == 1 and attempt <= 2:
        return 503, 0.0, "busy"
    if index % 6 == 3 and attempt == 1:
        return 200, SLOW, "ok, but too late"  # the client has timed out and retried by then
    return 200, 0.0, "ok"


def planned_attempts(index: int) -> int:
    return {2: 2, 5: 2, 1: 3, 3: 2}.get(index % 6, 1)


def test_every_deliverable_customer_arrives_exactly_once(
    tmp_path: Path, receiver: Receiver, monkeypatch, make_db, one_export
) -> None:
    monkeypatch.setenv("ACRM_SECRET_TEST_HOOK_TOKEN", "t0k3n-xyz")
    receiver.plan = flaky
    con, segments = make_db(tmp_path, population(), SEGMENT, DAY1)
    export = one_export(tmp_path, export_def(receiver.url, token_env="ACRM_SECRET_TEST_HOOK_TOKEN"), segments)

    result = run_export(con, export, DAY1, tmp_path / "outbox", "run-1")
    receiver.wait_idle()

    # Hand-made expectation: 950 members, 198 + 68 suppressed, 684 deliverable in 19 batches of <= 37.
    assert (len(MEMBERS), len(NO_CONSENT), len(UNSUBSCRIBED), len(DELIVERABLE)) == (950, 198, 68, 684)
    assert len(CHUNKS) == math.ceil(684 / 37) == 19
    slow = [i for i in range(len(CHUNKS)) if i % 6 == 3]
    expected_attempts = sum(planned_attempts(i) for i in range(len(CHUNKS)))
    assert result.location == receiver.url
    assert result.counts == {
        "members": 950,
        "sent": 684,
        "suppressed": 198 + 68,
        "suppressed.no_consent": 198,
        "suppressed.unsubscribed": 68,
        "batches": 19,
        "attempts": expected_attempts,
    }

    # The receiver: one accepted body per batch, the batches are the sorted deliverable ids in chunks of 37.
    assert len(receiver.delivered) == 19
    by_index = {receiver.index[k]: body for k, body in receiver.delivered.items()}
    assert [[r["customer_id"] for r in by_index[i]["rows"]] for i in range(19)] == CHUNKS
    assert sorted(receiver.customers()) == DELIVERABLE  # none lost, none twice
    assert not set(receiver.customers()) & (NO_CONSENT | UNSUBSCRIBED)
    assert not any(r["customer_id"] in NO_CONSENT | UNSUBSCRIBED for q in receiver.requests for r in q.body["rows"])
    for key, body in receiver.delivered.items():
        assert body["batch_key"] == key
        assert (body["export"], body["campaign"], body["as_of"], body["action"]) == (
            "hook",
            "spring-24",
            "2024-03-01",
            "add",
        )
        for row in body["rows"]:
            i = int(row["customer_id"][1:])
            assert row == {"customer_id": cid(i), "email": f"{cid(i)}@example.org", "amount": float(i)}
    assert len(set(receiver.delivered)) == 19  # distinct keys for distinct batches

    # Every retry repeated the same key, as often as the plan asked; the late answers were duplicates.
    assert {receiver.index[k]: n for k, n in receiver.attempts.items()} == {i: planned_attempts(i) for i in range(19)}
    assert len(receiver.requests) == expected_attempts
    assert receiver.duplicates == len(slow) == 3
    assert {q.authorization for q in receiver.requests} == {"Bearer t0k3n-xyz"}

    # The delivery log: 'sent' with the key of the batch that carried the customer; suppressed without a key.
    log = log_rows(con, "hook", DAY1)
    key_of = receiver.key_of()
    assert len(log) == 950
    for c in DELIVERABLE:
        assert log[(c, "add")] == ("sent", None, key_of[c], "deliver", "run-1")
    for c in NO_CONSENT:
        assert log[(c, None)] == ("suppressed", "no_consent", None, "no_consent", "run-1")
    for c in UNSUBSCRIBED:
        assert log[(c, None)] == ("suppressed", "unsubscribed", None, "unsubscribed", "run-1")
    assert runs(con, "hook") == [("run-1", "success", None)]
    assert at_destination(con, "hook") == set(DELIVERABLE)


# --- (b) a re-run re-sends the same keys --------------------------------------------------------------------


def test_rerun_for_the_same_date_sends_the_same_batch_keys(
    tmp_path: Path, receiver: Receiver, make_db, one_export
) -> None:
    receiver.plan = flaky
    con, segments = make_db(tmp_path, population(), SEGMENT, DAY1)
    export = one_export(tmp_path, export_def(receiver.url), segments)
    run_export(con, export, DAY1, tmp_path / "outbox", "run-1")
    receiver.wait_idle()
    first_keys = set(receiver.delivered)
    first_bodies = dict(receiver.delivered)
    seen_before, duplicates_before = len(receiver.requests), receiver.duplicates

    receiver.plan = always_ok
    again = run_export(con, export, DAY1, tmp_path / "outbox", "run-2")
    receiver.wait_idle()

    rerun = receiver.requests[seen_before:]
    assert [q.key for q in rerun] == [key for key, _ in first_keys_by_index(receiver)]  # same keys and order
    assert {q.key for q in rerun} == first_keys and len(rerun) == 19
    assert receiver.duplicates - duplicates_before == 19  # duplicates only
    assert receiver.delivered == first_bodies
    assert sorted(receiver.customers()) == DELIVERABLE  # unique customers unchanged: 684
    assert again.counts["sent"] == 684 and again.counts["batches"] == 19 and again.counts["attempts"] == 19
    # The log for the date is the re-run's, with the same keys; both runs are recorded.
    key_of = receiver.key_of()
    log = log_rows(con, "hook", DAY1)
    assert {c: log[(c, "add")] for c in DELIVERABLE} == {
        c: ("sent", None, key_of[c], "deliver", "run-2") for c in DELIVERABLE
    }
    assert [(r[0], r[1]) for r in runs(con, "hook")] == [("run-1", "success"), ("run-2", "success")]


def first_keys_by_index(receiver: Receiver) -> list[tuple[str, int]]:
    """(key, index) ordered by the index the key got when first seen, i.e. the first run's batch order."""
    return sorted(receiver.index.items(), key=lambda kv: kv[1])


# --- (c) giving up ------------------------------------------------------------------------------------------


def test_a_receiver_that_always_fails_fails_the_export(tmp_path: Path, receiver: Receiver, make_db, one_export) -> None:
    receiver.plan = lambda index, attempt: (500, 0.0, "down for maintenance")
    con, segments = make_db(tmp_path, population(), SEGMENT, DAY1)
    export = one_export(tmp_path, export_def(receiver.url, max_attempts=3), segments)

    with pytest.raises(DeliveryFailed) as failed:
        run_export(con, export, DAY1, tmp_path / "outbox", "run-1")

    message = str(failed.value)
    assert receiver.url in message
    assert "3 times" in message and "HTTP 500" in message
    # Three attempts of the first batch (same key), then nothing more; nothing accepted.
    assert [q.attempt for q in receiver.requests] == [1, 2, 3]
    assert {q.key for q in receiver.requests} == set(receiver.index) and len(receiver.index) == 1
    assert [r["customer_id"] for r in receiver.requests[0].body["rows"]] == CHUNKS[0]
    assert receiver.delivered == {}
    assert runs(con, "hook") == [("run-1", "failed", message)]
    assert log_rows(con, "hook", DAY1) == {}
    assert at_destination(con, "hook") == set()


def test_a_failed_run_resumes_with_the_same_keys(tmp_path: Path, receiver: Receiver, make_db, one_export) -> None:
    receiver.plan = lambda index, attempt: (200, 0.0, "ok") if index == 0 else (502, 0.0, "bad gateway")
    con, segments = make_db(tmp_path, population(), SEGMENT, DAY1)
    export = one_export(tmp_path, export_def(receiver.url, max_attempts=2), segments)
    with pytest.raises(DeliveryFailed, match=r"failed 2 times \(last: HTTP 502\); 37 rows were delivered before"):
        run_export(con, export, DAY1, tmp_path / "outbox", "run-1")
    assert [r["customer_id"] for b in receiver.delivered.values() for r in b["rows"]] == CHUNKS[0]

    receiver.plan = always_ok
    result = run_export(con, export, DAY1, tmp_path / "outbox", "run-2")

    assert result.counts["sent"] == 684
    assert receiver.duplicates == 1  # the first batch, delivered by run-1, is not taken twice
    assert sorted(receiver.customers()) == DELIVERABLE
    assert [(r[0], r[1]) for r in runs(con, "hook")] == [("run-1", "failed"), ("run-2", "success")]


# --- (d) a 4xx rejects one batch ----------------------------------------------------------------------------

REASON = "field email: domain example.org is not accepted"


def test_a_rejected_batch_is_logged_with_the_receivers_reason(
    tmp_path: Path, receiver: Receiver, make_db, one_export
) -> None:
    receiver.plan = lambda index, attempt: (422, 0.0, REASON) if index == 1 else (200, 0.0, "ok")
    con, segments = make_db(tmp_path, population(), SEGMENT, DAY1)
    export = one_export(tmp_path, export_def(receiver.url), segments)

    result = run_export(con, export, DAY1, tmp_path / "outbox", "run-1")

    rejected, sent = set(CHUNKS[1]), sorted(set(DELIVERABLE) - set(CHUNKS[1]))
    rejected_key = next(k for k, i in receiver.index.items() if i == 1)
    assert receiver.attempts[rejected_key] == 1  # a 4xx is not retried
    assert sorted(receiver.customers()) == sent
    assert result.counts["rejected"] == 37 and result.counts["sent"] == 684 - 37
    log = log_rows(con, "hook", DAY1)
    key_of = receiver.key_of()
    for c in rejected:
        status, reason, batch_key, decision, _ = log[(c, "add")]
        assert (status, batch_key, decision) == ("rejected", rejected_key, "deliver")
        assert REASON in reason and "422" in reason
    for c in sent:
        assert log[(c, "add")] == ("sent", None, key_of[c], "deliver", "run-1")
    assert runs(con, "hook") == [("run-1", "success", None)]
    assert at_destination(con, "hook") == set(sent)  # the rejected ones are not at the destination


# --- (e) delta mode ---------------------------------------------------------------------------------------------

SMALL = 100
# Day 1: members are i >= 50 (total_amount = i); 60 and 61 have no consent.
D1_NO_CONSENT = {60, 61}
D1_AUDIENCE = {i for i in range(50, SMALL)} - D1_NO_CONSENT
# Day 2, by hand:
LEAVE = {55, 70, 71, 72}  # total_amount drops to 0: they leave the segment
ENTER = {10, 20, 30}  # total_amount jumps to 500: they enter
LOSE_CONSENT = {80, 81}  # still members, no longer deliverable: removed from the destination
GAIN_CONSENT = {60}  # was a suppressed member, is deliverable now: added
GONE = {90}  # no features any more (erased): not a member, removed
EXPECTED_ADDS = ENTER | GAIN_CONSENT
EXPECTED_REMOVES = LEAVE | LOSE_CONSENT | GONE


def day1_rows() -> list[dict]:
    return [customer(i, consent=i not in D1_NO_CONSENT) for i in range(SMALL)]


def day2_rows() -> list[dict]:
    rows = []
    for i in range(SMALL):
        if i in GONE:
            continue
        amount = 0.0 if i in LEAVE else 500.0 if i in ENTER else None
        consent = i not in (D1_NO_CONSENT - GAIN_CONSENT) | LOSE_CONSENT
        rows.append(customer(i, amount=amount, consent=consent))
    return rows


@pytest.fixture
def delta_export(one_export):
    """`delta_export(tmp_path, url, segments)`: a delta-mode webhook export to `url`, in batches of 3."""

    def delta_export(tmp_path: Path, url: str, segments):
        return one_export(tmp_path, export_def(url, key="hook_delta", batch_size=3) | {"mode": "delta"}, segments)

    return delta_export


def test_delta_mode_sends_exactly_the_changes(
    tmp_path: Path, receiver: Receiver, make_db, set_features, record_segments, delta_export
) -> None:
    # The first remove batch gets one 503: a remove is retried like an add.
    receiver.plan = lambda index, attempt: (503, 0.0, "busy") if index == 18 and attempt == 1 else (200, 0.0, "ok")
    con, segments = make_db(tmp_path, day1_rows(), SEGMENT, DAY1)
    export = delta_export(tmp_path, receiver.url, segments)
    day1 = run_export(con, export, DAY1, tmp_path / "outbox", "day-1")
    assert sorted(receiver.customers()) == sorted(cid(i) for i in D1_AUDIENCE)  # 48 adds, 16 batches
    assert day1.counts["batches"] == 16
    day1_keys = set(receiver.delivered)

    set_features(con, day2_rows())
    record_segments(con, segments, DAY2)
    day2 = run_export(con, export, DAY2, tmp_path / "outbox", "day-2")

    new = {k: b for k, b in receiver.delivered.items() if k not in day1_keys}
    adds = [b for b in new.values() if b["action"] == "add"]
    removes = [b for b in new.values() if b["action"] == "remove"]
    assert sorted(r["customer_id"] for b in adds for r in b["rows"]) == sorted(cid(i) for i in EXPECTED_ADDS)
    assert sorted(r["customer_id"] for b in removes for r in b["rows"]) == sorted(cid(i) for i in EXPECTED_REMOVES)
    assert (len(adds), len(removes)) == (2, 3)  # 4 adds and 7 removes in batches of 3
    assert all(b["as_of"] == "2024-03-02" and ":remove:" in b["batch_key"] for b in removes)
    assert all(":add:" in b["batch_key"] for b in adds)
    # Removal rows carry the fields as they were exported on day 1, the erased customer's too.
    removed_rows = {r["customer_id"]: r for b in removes for r in b["rows"]}
    for i in EXPECTED_REMOVES:
        assert removed_rows[cid(i)] == {"customer_id": cid(i), "email": f"{cid(i)}@example.org", "amount": float(i)}
    remove_keys = [k for k, b in new.items() if b["action"] == "remove"]
    assert sorted(receiver.attempts[k] for k in remove_keys) == [1, 1, 2]

    day2_members = ({i for i in range(50, SMALL)} - LEAVE - GONE) | ENTER
    unchanged = day2_members - EXPECTED_ADDS - LOSE_CONSENT - (D1_NO_CONSENT - GAIN_CONSENT)
    assert day2.counts == {
        "members": len(day2_members),
        "sent": 4,
        "removed": 7,
        "unchanged": len(unchanged),
        "suppressed": 3,  # 61 (still no consent), 80 and 81
        "suppressed.no_consent": 3,
        "batches": 5,
        "attempts": 6,
    }
    log = log_rows(con, "hook_delta", DAY2)
    key_of = {r["customer_id"]: k for k, b in new.items() for r in b["rows"]}
    for i in EXPECTED_ADDS:
        assert log[(cid(i), "add")] == ("sent", None, key_of[cid(i)], "deliver", "day-2")
    for i in EXPECTED_REMOVES:
        assert log[(cid(i), "remove")] == ("removed", None, key_of[cid(i)], "removed", "day-2")
    for i in unchanged:
        assert log[(cid(i), None)] == ("unchanged", "delta: already at the destination", None, "deliver", "day-2")
    assert at_destination(con, "hook_delta") == {cid(i) for i in (D1_AUDIENCE - EXPECTED_REMOVES) | EXPECTED_ADDS}


def test_delta_rerun_for_the_same_date_keeps_the_days_log(
    tmp_path: Path, receiver: Receiver, make_db, set_features, record_segments, delta_export
) -> None:
    con, segments = make_db(tmp_path, day1_rows(), SEGMENT, DAY1)
    export = delta_export(tmp_path, receiver.url, segments)
    run_export(con, export, DAY1, tmp_path / "outbox", "day-1")
    set_features(con, day2_rows())
    record_segments(con, segments, DAY2)
    run_export(con, export, DAY2, tmp_path / "outbox", "day-2")

    run_export(con, export, DAY2, tmp_path / "outbox", "day-2-again")

    log = log_rows(con, "hook_delta", DAY2)
    assert {c for (c, action), row in log.items() if row[0] == "sent"} == {cid(i) for i in EXPECTED_ADDS}
    assert {c for (c, action), row in log.items() if row[0] == "removed"} == {cid(i) for i in EXPECTED_REMOVES}
