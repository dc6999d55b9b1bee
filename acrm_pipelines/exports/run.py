"""One export for one date: select the audience, deliver, and log every customer's outcome.

`exports.deliveries` keeps one row per segment member and run (sent, rejected with the destination's
reason, suppressed or held back with the reason, removed, unchanged, already issued) with the batch
key; `exports.runs` one row per attempt (destination, location, counts, error); `exports.audience_changes`
what each destination holds after each successful run (the view `exports.audience`: now), which delta
mode diffs against: a run dated D starts from the holdings before D, so re-running D repeats D.

Nothing leaves for a date a run was not meant to send (`not_sent_reason`): a backfill sends only when
asked, an export only between its `starts` and `ends`, and money (bonus points, promo codes) never for a
date before its campaign first issued. Such a run is logged as `held` with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from acrm_pipelines.exports.audience import FIRST_DELIVERED, LOG, SUPPRESSED, ensure_log, select_audience
from acrm_pipelines.exports.destinations import DeliveryFailed, Job, build
from acrm_pipelines.exports.spec import Export

# Runs of a backfill: Dagster's (a backfill launched in the UI) and `acrm backfill`'s. They send only
# with the tag SEND_TAG=true (`acrm backfill --with-exports`, or the tag added in the launch dialog).
BACKFILL_TAGS = ("dagster/backfill", "acrm/backfill")
SEND_TAG = "acrm/send_exports"
MONEY = {"bonus": "bonus points", "promo_code": "promo codes"}


@dataclass
class ExportResult:
    key: str
    as_of: date
    location: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def held_before(con: duckdb.DuckDBPyConnection, key: str, as_of: date) -> dict[str, dict]:
    """customer_id -> row as exported, for what the destination held before `as_of`. A re-run of a date sees
    the same starting point: runs for earlier dates delivered after this date first was (a backfill sent
    later) are left out."""
    ensure_log(con)
    rows = con.execute(
        f"""SELECT customer_id, arg_max(row, as_of) FROM {LOG}.audience_changes c
        LEFT JOIN {FIRST_DELIVERED} f USING (export_key, as_of)
        WHERE c.export_key = ? AND c.as_of < ?
            AND coalesce(f.first_delivered, TIMESTAMP '1970-01-01') < coalesce(
                (SELECT first_delivered FROM {FIRST_DELIVERED} WHERE export_key = ? AND as_of = ?),
                TIMESTAMP '9999-12-31')
        GROUP BY 1 HAVING arg_max(kind, as_of) = 'add'""",
        [key, as_of, key, as_of],
    ).fetchall()
    return {cid: json.loads(row) if row else {} for cid, row in rows}


def not_sent_reason(con: duckdb.DuckDBPyConnection, export: Export, as_of: date, tags: dict[str, str]) -> str | None:
    """Why this run must send nothing for `as_of`, or None when it may send."""
    if any(tag in tags for tag in BACKFILL_TAGS) and tags.get(SEND_TAG) != "true":
        return (
            "not sent: a backfill recomputes the past and sends nothing unless asked "
            f"(`acrm backfill --with-exports`, or the run tag {SEND_TAG}=true)"
        )
    if export.starts and as_of < export.starts:
        return f"not sent: the export starts on {export.starts}"
    if export.ends and as_of > export.ends:
        return f"not sent: the export ended on {export.ends}"
    kind = export.destination.type
    if kind in MONEY and export.starts is None:
        ensure_log(con)
        first = con.execute(
            f"SELECT min(as_of) FROM {LOG}.ledger WHERE campaign = ? AND kind = ?", [export.campaign, kind]
        ).fetchone()[0]
        if first is not None and as_of < first:
            return (
                f"not sent: campaign {export.campaign} first issued on {first}, so no {MONEY[kind]} for an "
                "earlier date (set `starts:` on the export to issue for earlier dates)"
            )
    return None


def hold_export(con: duckdb.DuckDBPyConnection, export: Export, as_of: date, run_id: str, reason: str) -> ExportResult:
    """Log a run that sent nothing, with the reason; what was delivered for the date before stays."""
    ensure_log(con)
    con.execute(
        f"INSERT INTO {LOG}.runs VALUES (?, ?, ?, ?, '', ?, 'held', '{{}}', ?, ?, ?)",
        [export.key, as_of, run_id, export.destination.type, export.mode, reason, datetime.now(), datetime.now()],
    )
    return ExportResult(export.key, as_of, "", {"sent": 0})


def _removals(export: Export, held: dict[str, dict], customer_ids: list[str], schema: pa.Schema) -> pa.Table:
    """Customers to remove, with the fields they were exported with (an erased customer is still named)."""
    names = [f.name for f in schema]
    rows = [
        {**{n: None for n in names}, **{k: v for k, v in held[c].items() if k in names}, "customer_id": c}
        for c in customer_ids
    ]
    return pa.Table.from_pylist(rows, schema=pa.schema([pa.field(f.name, f.type) for f in schema]))


def run_export(
    con: duckdb.DuckDBPyConnection,
    export: Export,
    as_of: date,
    outbox: Path,
    run_id: str,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    started = time.perf_counter()
    audience = select_audience(con, export, as_of)
    table = audience.table
    deliver = table.filter(pc.equal(table["decision"], "deliver"))
    rows = deliver.drop_columns([c for c in ("arm", "decision") if c in deliver.column_names])
    removes: list[str] = []
    held = held_before(con, export.key, as_of)
    if export.mode == "delta":
        now = set(deliver["customer_id"].to_pylist())
        rows = rows.filter(pc.invert(pc.is_in(rows["customer_id"], pa.array(sorted(held), pa.string()))))
        removes = sorted(set(held) - now)
    removal_rows = _removals(export, held, removes, rows.schema)
    con.execute(
        f"INSERT INTO {LOG}.runs VALUES (?, ?, ?, ?, NULL, ?, 'running', NULL, NULL, ?, NULL)",
        [export.key, as_of, run_id, export.destination.type, export.mode, datetime.now()],
    )
    job = Job(export, as_of, run_id, rows, removal_rows, outbox, con, progress)
    try:
        delivery = build(export).deliver(job)
    except DeliveryFailed as err:
        _finish_run(con, export.key, as_of, run_id, "failed", {}, "", str(err))
        raise
    counts = _log(con, export, as_of, run_id, table, rows, delivery, removes)
    _record_audience(con, export, as_of, held, rows, delivery)
    _finish_run(con, export.key, as_of, run_id, "success", counts, delivery.location, None)
    return ExportResult(export.key, as_of, delivery.location, counts, time.perf_counter() - started)


def _finish_run(con, key: str, as_of: date, run_id: str, status: str, counts: dict, location: str, error) -> None:
    con.execute(
        f"""UPDATE {LOG}.runs SET status = ?, counts = ?, location = ?, error = ?, finished_at = ?
        WHERE export_key = ? AND as_of = ? AND run_id = ?""",
        [status, json.dumps(counts), location, error, datetime.now(), key, as_of, run_id],
    )


def _log(
    con, export: Export, as_of: date, run_id: str, table: pa.Table, sent_rows: pa.Table, delivery, removes: list[str]
) -> dict[str, int]:
    """One delivery-log row per member (and per removal); the audience left at the destination."""
    sent = set(delivery.sent)
    to_send = set(sent_rows["customer_id"].to_pylist())
    ids = table["customer_id"].to_pylist()
    decisions = table["decision"].to_pylist()
    statuses, reasons, actions, batches = [], [], [], []
    for cid, decision in zip(ids, decisions, strict=True):
        if decision in SUPPRESSED:
            statuses.append("suppressed"), reasons.append(decision), actions.append(None)
        elif decision == "held_back":
            statuses.append("held_back"), reasons.append(export.hold_out_arm), actions.append(None)
        elif cid in delivery.rejected:
            statuses.append("rejected"), reasons.append(delivery.rejected[cid]), actions.append("add")
        elif cid in sent:
            statuses.append("sent"), reasons.append(None), actions.append("add")
        elif cid in delivery.skipped:
            statuses.append("skipped"), reasons.append(delivery.skipped[cid]), actions.append(None)
        elif cid not in to_send:
            statuses.append("unchanged"), reasons.append("delta: already at the destination"), actions.append(None)
        else:
            statuses.append("failed"), reasons.append("not confirmed by the destination"), actions.append("add")
        batches.append(delivery.batch_of.get(cid))
    arms = table["arm"].to_pylist()
    decisions_all = list(decisions)
    removed = set(delivery.removed)
    for cid in removes:
        ids.append(cid), arms.append(None), decisions_all.append("removed")
        statuses.append("removed" if cid in removed else "failed")
        reasons.append(None), actions.append("remove"), batches.append(delivery.batch_of.get(cid))
    log = pa.table(  # noqa: F841 - read by DuckDB through the variable name
        {
            "customer_id": pa.array(ids, pa.string()),
            "arm": pa.array(arms, pa.string()),
            "decision": decisions_all,
            "action": pa.array(actions, pa.string()),
            "status": statuses,
            "reason": pa.array(reasons, pa.string()),
            "batch_key": pa.array(batches, pa.string()),
        }
    )
    con.execute(f"DELETE FROM {LOG}.deliveries WHERE export_key = ? AND as_of = ?", [export.key, as_of])
    con.execute(
        f"""INSERT INTO {LOG}.deliveries SELECT ?, ?, ?, ?, ?, customer_id, arm, decision, action, status, reason,
            batch_key, ? FROM log""",
        [export.key, as_of, run_id, export.channel, export.campaign, datetime.now()],
    )
    counts: dict[str, int] = {"members": len(table)}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    for decision in decisions:
        if decision in SUPPRESSED:
            counts[f"suppressed.{decision}"] = counts.get(f"suppressed.{decision}", 0) + 1
    counts["batches"] = delivery.batches
    counts["attempts"] = delivery.attempts
    return counts


def _record_audience(con, export: Export, as_of: date, held: dict[str, dict], rows: pa.Table, delivery) -> None:
    """The destination's holdings after this successful run, as changes dated `as_of` (replacing a re-run's)."""
    sent = set(delivery.sent)  # once: rebuilt per row it made a 300k-member export take many minutes
    sent_rows = {r["customer_id"]: r for r in rows.to_pylist() if r["customer_id"] in sent}
    if export.mode == "full":  # the destination now holds exactly what was sent (or issued before)
        holds = set(sent_rows) | set(delivery.skipped)
    else:
        holds = (set(held) - set(delivery.removed)) | set(sent_rows)
    adds = sorted(holds - set(held))
    removes = sorted(set(held) - holds)
    changes = pa.table(  # noqa: F841 - read by DuckDB through the variable name
        {
            "customer_id": pa.array(adds + removes, pa.string()),
            "kind": pa.array(["add"] * len(adds) + ["remove"] * len(removes), pa.string()),
            "row": pa.array(
                [json.dumps(sent_rows.get(c, {}), default=str) for c in adds] + [None] * len(removes), pa.string()
            ),
        }
    )
    con.execute(f"DELETE FROM {LOG}.audience_changes WHERE export_key = ? AND as_of = ?", [export.key, as_of])
    con.execute(
        f"INSERT INTO {LOG}.audience_changes SELECT ?, customer_id, ?, kind, row FROM changes", [export.key, as_of]
    )
