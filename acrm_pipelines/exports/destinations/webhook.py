"""HTTP webhook: JSON batches, an idempotency key per batch, retries with exponential backoff.

Each batch is `POST`ed as `{"export", "campaign", "as_of", "action": "add"|"remove", "batch_key",
"rows": [...]}` with the header `Idempotency-Key: <batch_key>`. Keys depend only on the export, the
date, the action and the batch's customers, so a retried or re-run export re-sends the same keys and
the receiver can drop duplicates. 5xx answers, timeouts and connection errors are retried up to
`max_attempts` with backoff `backoff_seconds × 2^attempt`; a 4xx answer rejects the batch's rows with
the receiver's reason (kept in the delivery log); the last failed retry fails the export.

The host is checked again here, where it matters: a listed name (ACRM_WEBHOOK_ALLOWED_HOSTS) or address,
or a loopback address, is connected to as is; any other name must resolve to loopback addresses only,
and the connection goes to the addresses that were checked, so DNS cannot route a validated URL
elsewhere (also not between the check and the connection). A refused host fails the export before
anything is sent. Redirects are not followed (a 3xx answer fails the export at once, naming where it
pointed), and environment proxies are not used.

No URL is printed as written: errors, the location in the delivery log and metadata, and the log records
of httpx and httpcore (the URL of every request; at DEBUG, every response header) go through `redact`
(no user:password, no query values, no token-like path segments), and the token's value and those parts
of the URL are replaced wherever a receiver's answer echoes them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import socket
import time
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

import httpcore
import httpx
import tenacity

from acrm_pipelines.exports.destinations.base import Delivery, DeliveryFailed, Job, batch_key
from acrm_pipelines.exports.spec import (
    TOKEN_ENV_PATTERN,
    TOKEN_ENV_RULE,
    host_listed,
    ip_of,
    redact,
    redact_url,
    url_host,
    url_problem,
    url_secrets,
)
from acrm_pipelines.settings import Settings

# The token and URL parts of the delivery under way, for the log filter (httpx logs in the sending thread).
_SECRETS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("acrm_webhook_secrets", default=())
HTTP_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks")


class _Redacting(logging.Filter):
    """httpx logs every request's URL (`HTTP Request: POST …`), httpcore at DEBUG the response headers (a
    Location may carry a token): the records keep redacted text. A logger's filter sees only its own records,
    so each logger gets one."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage(), _SECRETS.get()), None
        return True


_REDACTING = _Redacting()
for _name in HTTP_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACTING)


class HostRefused(Exception):
    """The webhook's host (or what its name resolves to) is not allowed; nothing was sent to it."""


class _Retryable(Exception):
    """A 5xx answer or a transport error (its text: the status or the error's type, never the URL)."""


def resolve(host: str, port: int) -> list[str]:
    """The addresses a name resolves to (a module function, so tests can stand in for DNS)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def checked_addresses(host: str, port: int, allowed: Sequence[str]) -> list[str]:
    """Where to connect for `host`: itself when allowed as written, else its addresses if all are loopback."""
    ip = ip_of(host)
    if ip is not None:
        if ip.is_loopback or host_listed(host, allowed):
            return [host]
        raise HostRefused(f"host {host} is not allowed: add it to ACRM_WEBHOOK_ALLOWED_HOSTS")
    if host_listed(host, allowed):
        return [host]  # listed by name: the operator vouches for wherever it resolves
    try:
        addresses = list(dict.fromkeys(resolve(host, port)))
    except OSError as err:
        raise HostRefused(f"host {host} does not resolve: {err}") from err
    outside = [a for a in addresses if not getattr(ip_of(a), "is_loopback", False)]
    if outside or not addresses:
        raise HostRefused(
            f"host {host} resolves to {', '.join(outside) or 'nothing'}, not loopback: "
            "add it to ACRM_WEBHOOK_ALLOWED_HOSTS"
        )
    return addresses


class _CheckedBackend(httpcore.SyncBackend):
    """Every TCP connection (the first and each reconnection) goes only to addresses checked just now."""

    def __init__(self, allowed: Sequence[str]):
        self.allowed = tuple(allowed)

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ANN001
        last: Exception | None = None
        for address in checked_addresses(host, port, self.allowed):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as err:  # the next address, like socket.create_connection
                last = err
        raise last  # type: ignore[misc] - checked_addresses returns at least one address


class _CheckedTransport(httpx.HTTPTransport):
    def __init__(self, allowed: Sequence[str]):
        super().__init__()
        # httpx has no option for the network backend; its pool is replaced by one with the checked backend
        # (TLS still verifies the certificate against the URL's name).
        limits = httpx.Limits()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(allowed),
        )


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


class Webhook:
    can_remove = True

    def __init__(self, allowed_hosts: Sequence[str] | None = None):
        self.allowed_hosts = allowed_hosts  # None: ACRM_WEBHOOK_ALLOWED_HOSTS when delivering

    def deliver(self, job: Job) -> Delivery:
        dest = job.export.destination
        allowed = Settings.from_env().webhook_allowed_hosts if self.allowed_hosts is None else self.allowed_hosts
        # Checked again here, for a definition that did not pass validation (the messages never repeat the URL).
        problem = url_problem(dest.url)
        if problem:
            raise DeliveryFailed(f"export {job.key}: destination.url: {problem}; nothing was sent")
        if dest.token_env and not re.fullmatch(TOKEN_ENV_PATTERN, dest.token_env):
            raise DeliveryFailed(f"export {job.key}: destination.token_env: {TOKEN_ENV_RULE}; nothing was sent")
        try:  # before any batch: a refused host fails the export with nothing sent
            checked_addresses(url_host(dest.url), httpx.URL(dest.url).port or 0, allowed)
        except HostRefused as err:
            raise DeliveryFailed(f"export {job.key}: {redact(str(err))}; nothing was sent") from None
        headers = {"Content-Type": "application/json"}
        secrets = url_secrets(dest.url)  # what a receiver's answer may echo back, besides the token
        if dest.token_env:
            token = os.environ.get(dest.token_env)
            if not token:
                raise DeliveryFailed(f"export {job.key}: environment variable {dest.token_env} (the token) is not set")
            headers["Authorization"] = f"Bearer {token}"
            secrets.append(token)
        result = Delivery(location=redact_url(dest.url))
        logged = _SECRETS.set(tuple(secrets))
        try:
            self._send(job, dest, headers, result, allowed, secrets)
        except HostRefused as err:  # the name resolved elsewhere after the first check
            raise DeliveryFailed(
                f"export {job.key}: {redact(str(err), secrets)}; {len(result.sent)} rows were delivered before, "
                "the rest was not sent"
            ) from None
        finally:
            _SECRETS.reset(logged)
        return result

    def _send(
        self, job: Job, dest, headers: dict, result: Delivery, allowed: Sequence[str], secrets: list[str]
    ) -> None:
        with httpx.Client(timeout=dest.timeout_seconds, transport=_CheckedTransport(allowed)) as client:
            for action, table in (("add", job.adds), ("remove", job.removes)):
                rows = table.to_pylist()
                for start in range(0, len(rows), dest.batch_size):
                    batch = rows[start : start + dest.batch_size]
                    ids = [r["customer_id"] for r in batch]
                    identity = [str(r[job.keys_column]) for r in batch] if job.keys_column else ids
                    key = batch_key(job.key, job.as_of, action, identity)
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
                    status, reason = self._post(
                        client, dest, body, {**headers, "Idempotency-Key": key}, result, job, secrets
                    )
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

    def _post(
        self, client: httpx.Client, dest, body: str, headers: dict, result: Delivery, job: Job, secrets: list[str]
    ):
        url = redact_url(dest.url)

        def attempt() -> tuple[str, str]:
            result.attempts += 1
            try:
                # follow_redirects=False is httpx's default; said here because a redirect must never be followed.
                response = client.post(dest.url, content=body, headers=headers, follow_redirects=False)
            except httpx.TransportError as err:  # timeouts and refused connections (the type only: no URL)
                raise _Retryable(type(err).__name__) from None
            if response.status_code < 300:
                return "sent", ""
            if response.status_code < 400:  # a redirect: retrying cannot help, following could leak
                target = redact(response.headers.get("location", "(no Location)"), secrets)[:200]
                raise DeliveryFailed(
                    f"export {job.key}: {url} answered HTTP {response.status_code} (a redirect to {target}); "
                    f"redirects are not followed: put the final URL in the definition; "
                    f"{len(result.sent)} rows were delivered before"
                )
            if response.status_code < 500:
                # Redacted before it is cut to 200 characters: a cut secret would no longer be recognised.
                text = redact(response.text[:10_000], secrets)[:200]
                return "rejected", f"HTTP {response.status_code}: {text}"
            raise _Retryable(f"HTTP {response.status_code}")

        # Only a 5xx answer or a transport error is tried again, after backoff_seconds × 2^(attempts so far − 1);
        # anything else raised (a redirect, a refused host) ends the delivery at once.
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(dest.max_attempts),
            wait=tenacity.wait_exponential(multiplier=dest.backoff_seconds, exp_base=2),
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=time.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as err:
            last = str(err)
        raise DeliveryFailed(  # outside the handler: no chained exception
            f"export {job.key}: {url} failed {dest.max_attempts} times (last: {last}); "
            f"{len(result.sent)} rows were delivered before; re-run the export to resume (same batch keys)"
        )
