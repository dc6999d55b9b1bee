"""HTTP webhook: JSON batches, an idempotency key per batch, retries with exponential backoff.

Each batch is `POST`ed as `{"export", "campaign", "as_of", "action": "add"|"remove", "batch_key",
"rows": [...]}` with the header `Idempotency-Key: <batch_key>`. Keys depend only on the export, the
date, the action and the batch's customers, so a retried or re-run export re-sends the same keys and
the receiver can drop duplicates. 5xx answers, timeouts and connection errors are retried up to
`max_attempts` with backoff `backoff_seconds × 2^attempt`; a 4xx answer rejects the batch's rows with
the receiver's reason (kept in the delivery log); the last failed retry fails the export.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime
from decimal import Decimal

import httpx

from acrm_pipelines.exports.destinations.base import Delivery, DeliveryFailed, Job, batch_key


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


class Webhook:
    can_remove = True

    def deliver(self, job: Job) -> Delivery:
        dest = job.export.destination
        headers = {"Content-Type": "application/json"}
        if dest.token_env:
            token = os.environ.get(dest.token_env)
            if not token:
                raise DeliveryFailed(f"export {job.key}: environment variable {dest.token_env} (the token) is not set")
            headers["Authorization"] = f"Bearer {token}"
        result = Delivery(location=dest.url)
        with httpx.Client(timeout=dest.timeout_seconds) as client:
            for action, table in (("add", job.adds), ("remove", job.removes)):
                rows = table.to_pylist()
                for start in range(0, len(rows), dest.batch_size):
                    batch = rows[start : start + dest.batch_size]
                    ids = [r["customer_id"] for r in batch]
                    key = batch_key(job.key, job.as_of, action, ids)
                    body = json.dumps(
                        {
                            "export": job.key,
                            "campaign": job.export.campaign,
                            "as_of": job.as_of.isoformat(),
                            "action": action,
                            "batch_key": key,
                            "rows": batch,
                        },
                        default=_json_default,
                    )
                    status, reason = self._post(client, dest, body, {**headers, "Idempotency-Key": key}, result, job)
                    result.batches += 1
                    for cid in ids:
                        result.batch_of[cid] = key
                    if status == "rejected":
                        result.rejected.update(dict.fromkeys(ids, reason))
                    elif action == "add":
                        result.sent += ids
                    else:
                        result.removed += ids
                    job.say(f"webhook batch {result.batches} {action} {len(ids)} rows: {status}")
        return result

    def _post(self, client: httpx.Client, dest, body: str, headers: dict, result: Delivery, job: Job):
        last = ""
        for attempt in range(dest.max_attempts):
            result.attempts += 1
            try:
                response = client.post(dest.url, content=body, headers=headers)
            except httpx.TransportError as err:  # timeouts and refused connections
                last = f"{type(err).__name__}"
            else:
                if response.status_code < 300:
                    return "sent", ""
                if 400 <= response.status_code < 500:
                    return "rejected", f"HTTP {response.status_code}: {response.text[:200]}"
                last = f"HTTP {response.status_code}"
            if attempt + 1 < dest.max_attempts:
                time.sleep(dest.backoff_seconds * 2**attempt)
        raise DeliveryFailed(
            f"export {job.key}: {dest.url} failed {dest.max_attempts} times (last: {last}); "
            f"{len(result.sent)} rows were delivered before; re-run the export to resume (same batch keys)"
        )
