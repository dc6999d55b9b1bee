"""Journey sends through a webhook export, to a real HTTP server on 127.0.0.1: every send arrives once with its
send key, each batch's `Idempotency-Key` digests its rows' send keys, a receiver that keeps failing leaves the
sends pending and the next tick sends the same batches with the same keys, and a rejected batch is logged
with the receiver's reason.

Five customers abandon a cart on 11-10 (c1-c5, one every hour from 08:00); the journey pushes to the webhook
an hour later. No quiet hours.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest

from acrm_pipelines.exports.destinations.base import DeliveryFailed
from acrm_pipelines.journeys import run
from acrm_pipelines.journeys.validate import load_journeys

JOURNEY = """
key: cart
on: {event: cart_abandon}
steps:
  - wait: 1h
  - send: cart_hook
"""
CUSTOMERS = [f"c{i}" for i in range(1, 6)]
EVENTS = [(c, datetime(2026, 11, 10, 8 + i), "cart_abandon") for i, c in enumerate(CUSTOMERS)]


@dataclass
class Receiver:
    url: str = ""
    answer: int = 200
    requests: list[tuple[str, dict]] = field(default_factory=list)  # (Idempotency-Key, body) of every request
    accepted: dict[str, dict] = field(default_factory=dict)  # key -> the body accepted first
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        rec: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers["Idempotency-Key"]
        with rec.lock:
            rec.requests.append((key, body))
            status = rec.answer
            if status < 300:
                rec.accepted.setdefault(key, body)
        text = b"bad phone" if status == 422 else b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.receiver  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def setup(tmp_path, receiver, set_features, segment_set, export_set):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    set_features(con, [{"customer_id": c, "consent_push": True} for c in CUSTOMERS])
    segments = segment_set(tmp_path, "key: anyone\nrules: {field: customer_id, op: is_not_null}\n")
    destination = {"type": "webhook", "url": receiver.url, "batch_size": 2, "max_attempts": 2, "backoff_seconds": 0}
    exports = export_set(
        tmp_path, [{"key": "cart_hook", "channel": "push", "campaign": "cart", "destination": destination}], segments
    )
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "j.yaml").write_text(JOURNEY)
    journeys = load_journeys([tmp_path / "journeys"], segments, exports, root=tmp_path)
    con.execute("CREATE SCHEMA staging")
    con.execute("CREATE TABLE staging.stg_crm__events (customer_id VARCHAR, occurred_at TIMESTAMP, event_type VARCHAR)")
    con.executemany("INSERT INTO staging.stg_crm__events VALUES (?, ?, ?)", EVENTS)

    def tick(hour: int):
        return run.tick(con, journeys, exports, datetime(2026, 11, 10, hour), tmp_path / "outbox")

    return con, tick


def expected_key(send_keys: list[str]) -> str:
    """The export's batch key (exports/destinations/base.py) over the rows' send keys, as documented."""
    digest = hashlib.sha256("\n".join(["cart_hook", "2026-11-10", "add", *send_keys]).encode()).hexdigest()[:16]
    return f"cart_hook:2026-11-10:add:{digest}"


def test_every_send_arrives_once_with_its_key(setup, receiver) -> None:
    con, tick = setup
    tick(12)  # c1-c4 abandoned by 11:00, so their pushes are due by 12:00; c5's is due at 13:00
    tick(14)
    sends = dict(con.execute("SELECT send_key, customer_id FROM journeys.sends WHERE status = 'delivered'").fetchall())
    assert sorted(sends.values()) == CUSTOMERS
    rows = [r for body in receiver.accepted.values() for r in body["rows"]]
    assert sorted((r["send_key"], r["customer_id"]) for r in rows) == sorted(sends.items())
    for key, body in receiver.accepted.items():
        assert key == expected_key([r["send_key"] for r in body["rows"]]) == body["batch_key"]
    assert len(receiver.requests) == len(receiver.accepted) == 3  # 4 sends in batches of 2, then 1


def test_a_failing_receiver_leaves_the_sends_pending_and_the_next_tick_repeats_the_keys(setup, receiver) -> None:
    con, tick = setup
    receiver.answer = 503
    with pytest.raises(DeliveryFailed):
        tick(12)
    assert con.execute("SELECT DISTINCT status FROM journeys.sends").fetchall() == [("pending",)]
    failed_keys = {key for key, _ in receiver.requests}
    receiver.answer = 200
    tick(12)  # a replayed tick: nothing new is decided, the pending sends are delivered
    assert len(failed_keys) == 1 and len(receiver.accepted) == 2  # the first batch failed twice: nothing after it
    assert failed_keys <= set(receiver.accepted)  # the batch that failed went again with its key
    statuses = con.execute("SELECT customer_id, status FROM journeys.sends ORDER BY 1").fetchall()
    assert statuses == [(c, "delivered") for c in CUSTOMERS[:4]]


def test_a_rejected_batch_is_logged_with_the_reason(setup, receiver) -> None:
    con, tick = setup
    receiver.answer = 422
    tick(12)
    rows = con.execute("SELECT status, reason FROM journeys.sends").fetchall()
    assert rows == [("rejected", "HTTP 422: bad phone")] * 4
    assert date(2026, 11, 10) in {d for (d,) in con.execute("SELECT as_of FROM exports.deliveries").fetchall()}
