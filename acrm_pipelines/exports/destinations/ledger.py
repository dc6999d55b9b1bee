"""Bonus-point accrual and unique promo codes: exactly once per customer and campaign.

`exports.ledger` (in the DuckDB file) is keyed by (campaign, kind, customer_id). A run issues to the
customers the ledger does not have yet, in batches of `BATCH` committed one by one; if the process
dies mid-way, committed batches stay and the rest rolls back, so a repeated run issues exactly the
missing ones. The outbox file (`<key>/<campaign>.bonus.csv` or `.promo_codes.csv`) is rewritten from
the ledger after each run, atomically: it always lists every issue of the campaign once.
Promo codes are `prefix` + `length` characters drawn with `secrets` from `alphabet` (unguessable);
a code already used anywhere in the ledger is drawn again.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import pyarrow as pa

from acrm_pipelines.exports.destinations.base import Delivery, Job
from acrm_pipelines.exports.destinations.files import write_atomically

LEDGER = "exports.ledger"
BATCH = 1000


def draw_codes(n: int, alphabet: str, length: int, prefix: str, taken: set[str]) -> list[str]:
    codes: list[str] = []
    seen = set(taken)
    while len(codes) < n:
        code = prefix + "".join(secrets.choice(alphabet) for _ in range(length))
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


class LedgerSink:
    can_remove = False

    def deliver(self, job: Job) -> Delivery:
        dest = job.export.destination
        kind = dest.type
        campaign = job.export.campaign
        con = job.con
        issued = {
            r[0]
            for r in con.execute(
                f"SELECT customer_id FROM {LEDGER} WHERE campaign = ? AND kind = ?", [campaign, kind]
            ).fetchall()
        }
        todo = [c for c in job.adds["customer_id"].to_pylist() if c not in issued]
        result = Delivery(location="")
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            points = [dest.points] * len(batch) if kind == "bonus" else [None] * len(batch)
            codes: list[str | None] = [None] * len(batch)
            if kind == "promo_code":
                candidates = draw_codes(len(batch), dest.alphabet, dest.length, dest.prefix, set())
                clash = {
                    r[0]
                    for r in con.execute(
                        f"SELECT code FROM {LEDGER} WHERE code IN (SELECT unnest(?::VARCHAR[]))", [candidates]
                    ).fetchall()
                }
                codes = [c for c in candidates if c not in clash]
                codes += draw_codes(
                    len(batch) - len(codes), dest.alphabet, dest.length, dest.prefix, clash | set(codes)
                )
            rows = pa.table(  # noqa: F841 - read by DuckDB through the variable name
                {"customer_id": batch, "points": pa.array(points, pa.int64()), "code": pa.array(codes, pa.string())}
            )
            con.execute("BEGIN TRANSACTION")
            con.execute(
                f"INSERT INTO {LEDGER} SELECT ?, ?, customer_id, points, code, ?, ?, ? FROM rows "
                "ON CONFLICT DO NOTHING",
                [campaign, kind, job.key, job.as_of, datetime.now()],
            )
            con.execute("COMMIT")
            result.sent += batch
            result.batches += 1
            result.attempts += 1
            job.say(f"ledger batch {result.batches} committed: {len(batch)} {kind} issues")
        suffix = "bonus" if kind == "bonus" else "promo_codes"
        path = job.outbox / job.key / f"{campaign}.{suffix}.csv"
        everything = con.sql(
            f"SELECT customer_id, points, code, as_of FROM {LEDGER} WHERE campaign = ? AND kind = ? "
            "ORDER BY customer_id",
            params=[campaign, kind],
        ).to_arrow_table()
        columns = ["customer_id", "points", "as_of"] if kind == "bonus" else ["customer_id", "code", "as_of"]
        write_atomically(everything.select(columns), path, "csv")
        result.location = str(path)
        already = [c for c in job.adds["customer_id"].to_pylist() if c in issued]
        result.skipped = dict.fromkeys(already, "already_issued")
        return result
