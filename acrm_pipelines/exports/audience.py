"""Who an export may reach on a date: segment members, minus suppression, minus the hold-out arm.

Every member gets exactly one decision, in this order: `no_features` (not a customer on that date),
`no_consent`, `unsubscribed`, `complained`, `frequency_cap` (suppressed), `held_back` (hold-out arm,
recorded but never sent), `deliver`. Suppression comes before the hold-out so that control and
treatment are compared over the same eligible customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import duckdb
import pyarrow as pa

from acrm_pipelines.exports.spec import Export
from acrm_pipelines.features.history import feature_columns
from acrm_pipelines.segments.dates import cutoff, window_start
from acrm_pipelines.segments.members import arm_recorded, segment_members_sql
from acrm_pipelines.sql import ident, lit

# channel -> (consent column or None, opt-out columns): what suppresses a customer on that channel.
CHANNEL_RULES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "email": ("consent_email", ("unsubscribed_email", "complained")),
    "sms": ("consent_sms", ("unsubscribed_sms",)),
    "push": ("consent_push", ("unsubscribed_push",)),
    "viber": ("consent_sms", ("unsubscribed",)),
    "ads": (None, ("unsubscribed", "complained")),
    "other": (None, ("unsubscribed", "complained")),
}
SUPPRESSED = ("no_features", "no_consent", "unsubscribed", "complained", "frequency_cap")
LOG = "exports"
# When each export first delivered for each date: the moment a re-run of that date looks back from.
FIRST_DELIVERED = f"""(SELECT export_key, as_of, min(started_at) AS first_delivered FROM {LOG}.runs
    WHERE status = 'success' GROUP BY 1, 2)"""
# A row joined to FIRST_DELIVERED as `f` counts only if it had first been delivered before this export
# first delivered for this date (params: export key, as_of): a re-run of a date starts where it did.
DELIVERED_BEFORE = f"""coalesce(f.first_delivered, TIMESTAMP '1970-01-01') < coalesce(
    (SELECT first_delivered FROM {FIRST_DELIVERED} WHERE export_key = ? AND as_of = ?), TIMESTAMP '9999-12-31')"""


@dataclass
class Audience:
    """One row per segment member: customer_id, arm, decision, and the export's output fields."""

    table: pa.Table

    def customers(self, decision: str) -> list[str]:
        mask = pa.compute.equal(self.table["decision"], decision)
        return self.table.filter(mask)["customer_id"].to_pylist()

    def counts(self) -> dict[str, int]:
        counts = self.table.group_by("decision").aggregate([("customer_id", "count")]).to_pylist()
        return {row["decision"]: row["customer_id_count"] for row in counts}


def field_sql(name: str, spec) -> str:
    if spec.const is not None:
        return f"{lit(spec.const)} AS {ident(name)}"
    col = f"f.{ident(spec.feature)}"
    fmt = {
        None: col,
        "upper": f"upper({col})",
        "lower": f"lower({col})",
        "title": f"(upper(left({col}, 1)) || lower(substr({col}, 2)))",
        "trim": f"trim({col})",
        "date": f"strftime(CAST({col} AS DATE), '%Y-%m-%d')",
        "round0": f"round(CAST({col} AS DOUBLE), 0)",
        "round2": f"round(CAST({col} AS DOUBLE), 2)",
        "int": f"CAST({col} AS BIGINT)",
    }[spec.format]
    return f"{fmt} AS {ident(name)}"


def channel_checks(export: Export, columns: set[str]) -> list[str]:
    """The CASE branches that suppress a customer on the export's channel (features `f`, maybe none): no
    features, no consent, unsubscribed, complained, for the feature columns there are."""
    consent, opt_outs = CHANNEL_RULES[export.channel]
    checks = ["WHEN f.customer_id IS NULL THEN 'no_features'"]
    if consent and consent in columns:
        checks.append(f"WHEN NOT coalesce(f.{ident(consent)}, false) THEN 'no_consent'")
    for column in opt_outs:
        if column in columns:
            reason = "complained" if column == "complained" else "unsubscribed"
            checks.append(f"WHEN coalesce(f.{ident(column)}, false) THEN '{reason}'")
    return checks


def select_audience(con: duckdb.DuckDBPyConnection, export: Export, as_of: date) -> Audience:
    """Members of the export's segment (and arm) on `as_of` with their decision and output fields."""
    if export.segment is None:
        raise ValueError(f"export {export.key} has no segment: only journeys send it")
    checks = channel_checks(export, set(feature_columns(con)))
    member_params: list = [export.segment.segment, as_of]
    arm_filter = ""
    if export.segment.arm is not None:
        arm_filter = "WHERE arm = ?"
        member_params.append(export.segment.arm)
    cap_join, cap_params = "", []
    if export.frequency_cap is not None:
        cap = export.frequency_cap
        start = window_start(cap.per, as_of)
        # Exports are dated by their partition: one sent on day D counts for every window containing D.
        # Only sends that existed when this export first delivered for `as_of` count, so a re-run of a date
        # reproduces it: a backfill or a re-run of another date, logged later, never shrinks it.
        cap_join = f"""LEFT JOIN (
            SELECT customer_id, count(*) AS n FROM (
                SELECT customer_id FROM marts.fct_messages WHERE channel = ? AND sent_at >= ? AND sent_at < ?
                UNION ALL
                SELECT d.customer_id FROM {LOG}.deliveries d LEFT JOIN {FIRST_DELIVERED} f USING (export_key, as_of)
                WHERE d.channel = ? AND d.status = 'sent' AND d.action = 'add' AND d.as_of >= ? AND d.as_of <= ?
                    AND NOT (d.export_key = ? AND d.as_of = ?)
                    AND {DELIVERED_BEFORE})
            GROUP BY 1) cap ON cap.customer_id = m.customer_id"""
        cap_params = [export.channel, start, cutoff(as_of), export.channel, _first_day(start), as_of]
        cap_params += [export.key, as_of, export.key, as_of]
        checks.append(f"WHEN coalesce(cap.n, 0) >= {int(cap.max)} THEN 'frequency_cap'")
    if export.hold_out_arm:
        checks.append(f"WHEN m.arm = {lit(export.hold_out_arm)} THEN 'held_back'")
    fields = "".join(f", {field_sql(n, s)}" for n, s in export.fields.items() if n != "customer_id")
    sql = f"""
        WITH m AS (
            SELECT customer_id, arm FROM ({segment_members_sql()}) {arm_filter}
        )
        SELECT m.customer_id, m.arm, CASE {" ".join(checks)} ELSE 'deliver' END AS decision{fields}
        FROM m LEFT JOIN marts.customer_features f ON f.customer_id = m.customer_id {cap_join}
        ORDER BY m.customer_id"""
    ensure_log(con)
    return Audience(con.sql(sql, params=[*member_params, *cap_params]).to_arrow_table())


def _first_day(start) -> date:
    """The first partition date whose day lies in a window starting at `start` (a datetime)."""
    day = start.date()
    return day if start.time() == start.time().min else day + timedelta(days=1)


DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {LOG}",
    f"""CREATE TABLE IF NOT EXISTS {LOG}.deliveries (
        export_key VARCHAR NOT NULL, as_of DATE NOT NULL, run_id VARCHAR NOT NULL, channel VARCHAR NOT NULL,
        campaign VARCHAR NOT NULL, customer_id VARCHAR NOT NULL, arm VARCHAR, decision VARCHAR NOT NULL,
        action VARCHAR, status VARCHAR NOT NULL, reason VARCHAR, batch_key VARCHAR, recorded_at TIMESTAMP NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {LOG}.runs (
        export_key VARCHAR NOT NULL, as_of DATE NOT NULL, run_id VARCHAR NOT NULL, destination VARCHAR NOT NULL,
        location VARCHAR, mode VARCHAR NOT NULL, status VARCHAR NOT NULL, counts JSON, error VARCHAR,
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP)""",
    # What each export's destination holds, as a changelog of successful runs: `add` rows keep the row
    # as exported (so a later removal can name the customer as the destination knows them).
    f"""CREATE TABLE IF NOT EXISTS {LOG}.audience_changes (
        export_key VARCHAR NOT NULL, customer_id VARCHAR NOT NULL, as_of DATE NOT NULL, kind VARCHAR NOT NULL,
        row JSON)""",
    f"""CREATE OR REPLACE VIEW {LOG}.audience AS
        SELECT export_key, customer_id, max(as_of) AS as_of FROM {LOG}.audience_changes
        GROUP BY 1, 2 HAVING arg_max(kind, as_of) = 'add'""",
    f"""CREATE TABLE IF NOT EXISTS {LOG}.ledger (
        campaign VARCHAR NOT NULL, kind VARCHAR NOT NULL, customer_id VARCHAR NOT NULL, points BIGINT, code VARCHAR,
        export_key VARCHAR NOT NULL, as_of DATE NOT NULL, issued_at TIMESTAMP NOT NULL,
        PRIMARY KEY (campaign, kind, customer_id))""",
    # Every promo code ever issued, once: the primary key refuses a second customer with the same code.
    f"""CREATE TABLE IF NOT EXISTS {LOG}.promo_codes (
        code VARCHAR PRIMARY KEY, campaign VARCHAR NOT NULL, customer_id VARCHAR NOT NULL)""",
]


def ensure_log(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        con.execute(statement)


# The run id of sends made outside an export's own runs (a journey's steps): its rows in the delivery log are
# recorded by `log_triggered`, one per send, and count for frequency caps and attribution like any other.
TRIGGERED = "triggered:"


def log_triggered(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    """Sends made outside an export's runs, in the delivery log (in the caller's transaction; call
    `ensure_log` before it): rows of export_key, as_of (the day of the send), run_id (TRIGGERED + who sent),
    channel, campaign, customer_id, batch_key (the send's idempotency key; a key logged before is skipped)."""
    con.execute(
        f"""INSERT INTO {LOG}.deliveries
        SELECT export_key, as_of, run_id, channel, campaign, customer_id, NULL, 'deliver', 'add', 'sent', NULL,
            batch_key, ?
        FROM rows WHERE batch_key NOT IN (SELECT batch_key FROM {LOG}.deliveries
            WHERE starts_with(run_id, '{TRIGGERED}') AND batch_key IS NOT NULL)""",
        [datetime.now()],
    )


def contacts_sql(with_log: bool = True) -> str:
    """SQL of (i, n): the messages on a channel the customer of each row `i` of `_who` (i, customer_id, since,
    until) got in [since, until): loaded messages by their time, and sends logged by exports and journeys by
    their day (a day counts when it overlaps the window). Parameters: the channel (twice `with_log`)."""
    logged = f"""UNION ALL
            SELECT customer_id, NULL, as_of, true FROM {LOG}.deliveries
            WHERE channel = ? AND status = 'sent' AND action = 'add'"""
    return f"""
        SELECT w.i, count(c.customer_id) AS n FROM _who w LEFT JOIN (
            SELECT customer_id, sent_at AS moment, sent_at::DATE AS day, false AS by_day
            FROM marts.fct_messages WHERE channel = ?
            {logged if with_log else ""}) c
        ON c.customer_id = w.customer_id AND (
            (NOT c.by_day AND c.moment >= w.since AND c.moment < w.until)
            OR (c.by_day AND c.day >= w.since::DATE AND c.day <= w.until::DATE))
        GROUP BY 1"""


def suppressed_sent(con: duckdb.DuckDBPyConnection, export: Export, as_of: date) -> int:
    """How many customers the log has as sent on the date who had no consent, opted out, or were in the
    hold-out arm: recomputed from the features and the stored memberships, not from the log's decisions.
    The members (expanded from the snapshots: ~4 s of a 10M-member segment) are read only when some
    snapshot or change of the segment names the hold-out arm; otherwise no member can be in it."""
    arm = export.hold_out_arm
    assert export.segment is not None
    hold_out = bool(arm) and arm_recorded(con, export.segment.segment, as_of, arm)
    members = [export.segment.segment, as_of] if hold_out else []
    params = [*members, export.key, as_of, *([arm] if hold_out else [])]
    return int(con.execute(_suppressed_sent_sql(export, hold_out), params).fetchall()[0][0])


def _suppressed_sent_sql(export: Export, hold_out: bool) -> str:
    """Customers logged as sent on the date who had no consent, opted out, or (with `hold_out`) were in the
    hold-out arm. Parameters: with `hold_out`, the segment key and the day; then the export key, the day;
    then, with `hold_out`, the arm."""
    consent, opt_outs = CHANNEL_RULES[export.channel]
    bad = ["f.customer_id IS NULL"]
    if consent:
        bad.append(f"NOT coalesce(f.{consent}, false)")
    bad += [f"coalesce(f.{c}, false)" for c in opt_outs]
    members = ""
    if hold_out:
        bad.append("m.arm = ?")
        members = f"LEFT JOIN ({segment_members_sql()}) m ON m.customer_id = d.customer_id"
    return f"""
        SELECT count(*) FROM {LOG}.deliveries d
        LEFT JOIN marts.customer_features f ON f.customer_id = d.customer_id
        {members}
        WHERE d.export_key = ? AND d.as_of = ? AND d.status = 'sent' AND ({" OR ".join(bad)})"""
