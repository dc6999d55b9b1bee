"""A backfill recomputes the past and sends nothing unless asked; money is never issued for a date before
its campaign started; re-running a date reproduces what it delivered, byte for byte.

The demo's example exports plus a webhook (a real HTTP server on 127.0.0.1) and a PostgreSQL table (the
tests' real server), on the demo data: a live run for the last day, then backfills of the two days before.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pytest
from dagster import DagsterInstance

from acrm_pipelines.automation.runner import backfill, run_partition
from acrm_pipelines.definitions import build_definitions
from acrm_pipelines.exports.destinations.base import DeliveryFailed
from acrm_pipelines.exports.destinations.files import write_delivered
from acrm_pipelines.settings import REPO_ROOT
from tests.cases.demo import DEMO_END

LIVE = DEMO_END
PAST = [DEMO_END - timedelta(days=2), DEMO_END - timedelta(days=1)]
TABLE = "crm.backfill_audience"


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
        pass


@pytest.fixture
def hook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def project(tmp_path: Path, demo_landing: Path, hook, postgres_dsn, monkeypatch, make_settings):
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS crm CASCADE")
    monkeypatch.setenv("ACRM_POSTGRES_DSN", postgres_dsn)
    exports = tmp_path / "exports"
    exports.mkdir()
    shutil.copy(REPO_ROOT / "exports" / "campaigns.yaml", exports / "campaigns.yaml")
    url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    (exports / "outside.yaml").write_text(
        f"key: loyal_hook\nsegment: champions\nchannel: other\ncampaign: loyal\n"
        f"destination: {{type: webhook, url: '{url}'}}\n"
        "---\n"
        f"key: loyal_table\nsegment: champions\nchannel: other\ncampaign: loyal\n"
        f"destination: {{type: postgres, table: {TABLE}}}\n"
        "fields: {customer_id: customer_id, email: email}\n"
    )
    settings = dataclasses.replace(make_settings(tmp_path, demo_landing), exports_dir=exports)
    return settings, hook, postgres_dsn


def delivered(settings, hook, dsn) -> dict:
    """Everything the outside world has: outbox files (bytes), ledger issues, webhook posts, table rows."""
    files = {
        str(p.relative_to(settings.outbox_dir)): p.read_bytes()
        for p in sorted(settings.outbox_dir.rglob("*"))
        if p.is_file()
    }
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        ledger = con.execute(
            "SELECT campaign, kind, customer_id, points, code, as_of FROM exports.ledger ORDER BY ALL"
        ).fetchall()
    with psycopg.connect(dsn) as conn:
        table = conn.execute(f"SELECT * FROM {TABLE} ORDER BY 1").fetchall()
    return {"files": files, "ledger": ledger, "posts": len(hook.bodies), "table": table}


def sent_on(settings, day) -> dict[str, int]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        rows = con.execute(
            "SELECT export_key, count(*) FROM exports.deliveries WHERE as_of = ? AND status = 'sent' GROUP BY 1", [day]
        ).fetchall()
    return dict(rows)


def held_on(settings, day) -> dict[str, str]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        rows = con.execute(  # each export's latest run for the day
            """SELECT export_key, arg_max(error, started_at) FROM exports.runs WHERE as_of = ?
            GROUP BY 1 HAVING arg_max(status, started_at) = 'held'""",
            [day],
        ).fetchall()
    return dict(rows)


def test_backfill_sends_nothing_by_default_and_reruns_reproduce(project) -> None:
    settings, hook, dsn = project
    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()
    live = run_partition(defs, settings, LIVE.isoformat(), instance)
    after_live = delivered(settings, hook, dsn)
    # The live day reached every kind of destination (or the rest of the test would prove nothing).
    assert live.exports["loyal_hook"]["sent"] > 0 and after_live["posts"] > 0 and after_live["table"]
    assert {kind for _, kind, *_ in after_live["ledger"]} == {"bonus", "promo_code"}
    assert any(name.startswith("spring_email_file/") for name in after_live["files"])

    # A backfill of the two days before: history is recomputed, nothing leaves.
    backfill(defs, settings, PAST[0], PAST[1], instance)
    assert delivered(settings, hook, dsn) == after_live
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        evaluated = {r[0] for r in con.execute("SELECT DISTINCT as_of FROM segments.evaluations").fetchall()}
    assert set(PAST) <= evaluated
    for day in PAST:
        assert sent_on(settings, day) == {}
        held = held_on(settings, day)
        assert set(held) == set(live.exports), held  # every export says why it sent nothing
        assert all("backfill" in reason for reason in held.values())

    # Re-running the live day reproduces its deliveries byte for byte.
    run_partition(defs, settings, LIVE.isoformat(), instance)
    assert delivered(settings, hook, dsn)["files"] == after_live["files"]
    assert delivered(settings, hook, dsn)["ledger"] == after_live["ledger"]

    # Asked for, a backfill sends for the past date, except money before its campaign started.
    posts = len(hook.bodies)
    backfill(defs, settings, PAST[1], PAST[1], instance, send_exports=True)
    sent = sent_on(settings, PAST[1])
    assert sent.get("loyal_hook", 0) > 0 and len(hook.bodies) > posts
    assert sent.get("spring_email_file", 0) > 0
    assert f"spring_email_file/{PAST[1]}.csv" in delivered(settings, hook, dsn)["files"]
    assert delivered(settings, hook, dsn)["ledger"] == after_live["ledger"]  # no bonus, no promo code
    held = held_on(settings, PAST[1])
    assert set(held) == {"birthday_bonus", "winback_codes"}
    assert all(f"first issued on {LIVE}" in reason for reason in held.values()), held

    # The past date's sends are not counted against the live date's frequency cap on a re-run.
    run_partition(defs, settings, LIVE.isoformat(), instance)
    after = delivered(settings, hook, dsn)
    for name, data in after_live["files"].items():
        assert after["files"][name] == data, name


def test_a_dagster_backfill_run_holds_exports_unless_tagged(project) -> None:
    """What the UI's backfill dialog launches: runs tagged dagster/backfill, sending only with acrm/send_exports."""
    settings, hook, dsn = project
    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()
    run_partition(defs, settings, PAST[0].isoformat(), instance, tags={"dagster/backfill": "ui1"})
    assert sent_on(settings, PAST[0]) == {} and hook.bodies == []
    assert "loyal_hook" in held_on(settings, PAST[0])
    run_partition(
        defs, settings, PAST[0].isoformat(), instance, tags={"dagster/backfill": "ui2", "acrm/send_exports": "true"}
    )
    assert sent_on(settings, PAST[0]).get("loyal_hook", 0) > 0 and hook.bodies


def test_a_campaign_window_bounds_money(project) -> None:
    settings, hook, dsn = project
    text = (settings.exports_dir / "campaigns.yaml").read_text()
    bonus = "destination: {type: bonus, points: 500, reason: birthday}"
    assert bonus in text
    (settings.exports_dir / "campaigns.yaml").write_text(text.replace(bonus, f"starts: {LIVE}\n{bonus}"))
    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()
    run_partition(defs, settings, PAST[1].isoformat(), instance)  # a live run, but before `starts`
    assert "birthday_bonus" not in sent_on(settings, PAST[1])
    assert f"starts on {LIVE}" in held_on(settings, PAST[1])["birthday_bonus"]
    # The promo codes have no `starts`: nothing was issued before, so this first day is their start.
    assert sent_on(settings, PAST[1]).get("winback_codes", 0) > 0
    run_partition(defs, settings, LIVE.isoformat(), instance)
    assert sent_on(settings, LIVE).get("birthday_bonus", 0) > 0


def test_a_delivered_file_is_never_replaced_by_a_different_one(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "k" / "2026-11-20.csv"
    first = pa.table({"customer_id": ["a", "b", "c"], "email": ["a@x.io", "b@x.io", "c@x.io"]})
    write_delivered(first, path, "csv")
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    write_delivered(first, path, "csv")  # the same rows again: the file stays as it was
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    with pytest.raises(DeliveryFailed) as err:
        write_delivered(first.slice(0, 1), path, "csv")
    message = str(err.value)
    assert str(path) in message and "3 rows" in message and "1 row" in message
    assert path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
