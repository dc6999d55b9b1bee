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
from pathlib import PurePosixPath

import duckdb
import pyarrow as pa

from acrm_pipelines.exports.destinations.base import Delivery, Job
from acrm_pipelines.exports.destinations.files import write_atomically

LEDGER = "exports.ledger"
CODES = "exports.promo_codes"
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

    def _issue(self, job: Job, kind: str, batch: list[str]) -> None:
        """One transaction per batch: all of its issues are committed, or none (a kill rolls it back)."""
        dest = job.export.destination
        con = job.con
        for _ in range(5):  # a promo code drawn twice anywhere is drawn again
            codes: list[str | None] = [None] * len(batch)
            if kind == "promo_code":
                codes = draw_codes(len(batch), dest.alphabet, dest.length, dest.prefix, set())
            rows = pa.table(  # noqa: F841 - read by DuckDB through the variable name
                {
                    "customer_id": batch,
                    "points": pa.array([dest.points if kind == "bonus" else None] * len(batch), pa.int64()),
                    "code": pa.array(codes, pa.string()),
                }
            )
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(
                    f"INSERT INTO {LEDGER} SELECT ?, ?, customer_id, points, code, ?, ?, ? FROM rows",
                    [job.export.campaign, kind, job.key, job.as_of, datetime.now()],
                )
                if kind == "promo_code":
                    con.execute(f"INSERT INTO {CODES} SELECT code, ?, customer_id FROM rows", [job.export.campaign])
                con.execute("COMMIT")
                return
            except duckdb.ConstraintException:
                con.execute("ROLLBACK")
                if kind != "promo_code":
                    raise
        raise RuntimeError(f"export {job.key}: could not draw unique promo codes in 5 tries; widen length or alphabet")

    def deliver(self, job: Job) -> Delivery:
        dest = job.export.destination
        kind = dest.type
        campaign = job.export.campaign
        con = job.con
        suffix = "bonus" if kind == "bonus" else "promo_codes"
        # Checked before anything is issued (a symbolic link out of the outbox fails the export first).
        path = job.file(PurePosixPath(job.key, f"{campaign}.{suffix}.csv"))  # key and campaign have no / or ..
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
            self._issue(job, kind, batch)
            result.sent += batch
            result.batches += 1
            result.attempts += 1
            job.say(f"ledger batch {result.batches} committed: {len(batch)} {kind} issues")
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
