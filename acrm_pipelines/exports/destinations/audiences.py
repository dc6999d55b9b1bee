"""Advertising audience files: each identifier normalised as the platform's own SDK does it, then SHA-256.

The references are the platforms' SDKs (tests/test_audience_hashes_sdk.py holds us to them on a generated
corpus): Google's `google-ads-datamanager-util` (`Formatter`) and Meta's `facebook-business`
(`CustomAudience.format_params`). docs/exports.md ("Normalisation before hashing") lists every rule.

- Google Customer Match: columns `Email`, `Phone`, `First Name`, `Last Name`, `Country`. Trim and
  lower-case; an e-mail with inner whitespace or not exactly one `@` is dropped; at gmail.com and
  googlemail.com the local part loses a `+suffix` and its dots; phones as `+` and the digits (E.164 from
  ingest); names only trimmed and lower-cased (punctuation, hyphens and accents kept as given); the country
  a two-letter code, upper-case, not hashed (anything else is dropped).
- Meta Custom Audiences: columns `email`, `phone`, `fn`, `ln`, `country`. Trim whitespace, NUL and dots
  at both ends, lower-case; e-mails nothing more; phones the digits 0-9 without leading zeros; names
  letters only (Meta's SDK keeps a-z only; we keep letters of every script, composed, as Meta documents
  "special characters in UTF-8"); the country its first two letters a-z, hashed.
A value with nothing left after normalisation leaves an empty cell, never the hash of the empty string.
Only hashes leave: the raw values never reach the file. Delta mode writes removals to `*.remove.csv`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pyarrow as pa

from acrm_pipelines.exports.destinations.base import Delivery, Job
from acrm_pipelines.exports.destinations.files import write_delivered

# Which output column a feature becomes, per platform.
GOOGLE = {
    "email": "Email",
    "phone": "Phone",
    "first_name": "First Name",
    "last_name": "Last Name",
    "country": "Country",
}
META = {"email": "email", "phone": "phone", "first_name": "fn", "last_name": "ln", "country": "country"}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


GMAIL = ("gmail.com", "googlemail.com")
# Meta's SDK trims " \t\r\n\0\x0b." from both ends; Meta documents trimming whitespace, so all of it goes.
META_TRIM = re.compile(r"^[\s\0.]+|[\s\0.]+$")


def google_email(raw: str) -> str | None:
    """As Google's `Formatter.format_email_address`; None where it raises (not a usable address)."""
    email = raw.strip()
    if not email or re.search(r"\s", email):
        return None
    parts = email.lower().split("@")
    if len(parts) != 2 or not all(parts):
        return None
    local, domain = parts
    if domain in GMAIL:
        local = local.split("+")[0].replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


def google_phone(raw: str) -> str | None:
    """As `Formatter.format_phone_number`: `+` and the digits. Ingest already gives E.164."""
    digits = re.sub(r"\D", "", raw)
    return f"+{digits}" if digits else None


def google_country(raw: str) -> str | None:
    """As `Formatter.format_region_code`: the two-letter code, upper-case; anything else is dropped."""
    code = raw.strip().upper()
    return code if len(code) == 2 else None


def meta_trim(raw: str) -> str:
    return META_TRIM.sub("", raw).lower()


def meta_phone(raw: str) -> str:
    """Digits 0-9 as `format_params`; leading zeros dropped as Meta documents (the SDK keeps them)."""
    return re.sub(r"[^0-9]", "", raw).lstrip("0")


def name(raw: str, platform: str) -> str:
    """Google (`format_given_name` / `format_family_name`): trimmed and lower-cased, nothing else.
    Meta (`normalize_key` for FN/LN): letters only, so `Anne-Marie` is `annemarie`; letters beyond a-z are
    kept composed (NFC), where the SDK drops them (`Иван` would be empty)."""
    if platform == "meta_custom_audience":
        return "".join(ch for ch in unicodedata.normalize("NFC", meta_trim(raw)) if ch.isalpha())
    return raw.strip().lower()


def normalise(platform: str, feature: str, raw: str | None) -> str | None:
    """The cell for one identifier: a SHA-256 hex digest (Google's country: the code), or None (empty)."""
    if raw is None or not str(raw).strip():
        return None
    raw = str(raw)
    google = platform == "google_customer_match"
    if feature == "email":
        value = google_email(raw) if google else meta_trim(raw)
    elif feature == "phone":
        value = google_phone(raw) if google else meta_phone(raw)
    elif feature == "country":
        if google:
            return google_country(raw)  # Google: not hashed
        value = re.sub(r"[^a-z]", "", meta_trim(raw))[:2]
    else:
        value = name(raw, platform)
    return sha256(value) if value else None


def audience_table(platform: str, job: Job, rows: pa.Table) -> pa.Table:
    columns = GOOGLE if platform == "google_customer_match" else META
    out = {}
    for field_name, spec in job.export.fields.items():
        if spec.feature in columns:
            values = rows[field_name].to_pylist()
            out[columns[spec.feature]] = [normalise(platform, spec.feature, v) for v in values]
    return pa.table(out)


class AudienceFile:
    can_remove = True

    def deliver(self, job: Job) -> Delivery:
        platform = job.export.destination.type
        path = job.path(job.export.destination.path, "csv")
        write_delivered(audience_table(platform, job, job.adds), path, "csv")
        removed: list[str] = []
        if job.export.mode == "delta" and job.removes.num_rows:
            remove_path = path.with_name(path.stem + ".remove.csv")
            write_delivered(audience_table(platform, job, job.removes), remove_path, "csv")
            removed = job.removes["customer_id"].to_pylist()
        return Delivery(location=str(path), sent=job.adds["customer_id"], removed=removed, batches=1, attempts=1)
