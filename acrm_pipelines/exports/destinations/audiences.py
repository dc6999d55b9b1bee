"""Advertising audience files: each identifier normalised as the platform documents, then SHA-256.

- Google Ads Customer Match (and enhanced conversions): trim, lower-case; e-mails at gmail.com and
  googlemail.com lose the dots of the local part; phones in E.164 *with* the leading `+`; names lose
  punctuation; columns `Email`, `Phone`, `First Name`, `Last Name`, and `Country` (two-letter code,
  not hashed).
- Meta Custom Audiences: trim, lower-case; phones as digits only, country code included, no `+` and no
  leading zeros; names letters only; `country` lower-case and hashed; columns `email`, `phone`, `fn`,
  `ln`, `country`.
Only hashes leave: the raw values never reach the file. Delta mode writes removals to `*.remove.csv`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pyarrow as pa

from acrm_pipelines.exports.destinations.base import Delivery, Job
from acrm_pipelines.exports.destinations.files import write_atomically

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


def google_email(raw: str) -> str:
    email = raw.strip().lower()
    local, _, domain = email.partition("@")
    if domain in ("gmail.com", "googlemail.com"):
        local = local.replace(".", "")
    return f"{local}@{domain}"


def google_phone(raw: str) -> str:
    digits = re.sub(r"\D", "", raw)
    return f"+{digits}"


def meta_phone(raw: str) -> str:
    return re.sub(r"\D", "", raw).lstrip("0")


def name(raw: str, platform: str) -> str:
    """Lower-case, accents kept as UTF-8 (NFC). Google: punctuation dropped, inner spaces and hyphens kept;
    Meta: letters only ("no punctuation"), so `Anne-Marie` is `annemarie`."""
    text = unicodedata.normalize("NFC", raw.strip().lower())
    if platform == "meta_custom_audience":
        return "".join(ch for ch in text if ch.isalpha())
    return re.sub(r"[^\w\s-]|_", "", text).strip()


def normalise(platform: str, feature: str, raw: str | None) -> str | None:
    if raw is None or not str(raw).strip():
        return None
    raw = str(raw)
    if feature == "email":
        value = google_email(raw) if platform == "google_customer_match" else raw.strip().lower()
    elif feature == "phone":
        value = google_phone(raw) if platform == "google_customer_match" else meta_phone(raw)
    elif feature == "country":
        code = raw.strip().upper()[:2]
        return code if platform == "google_customer_match" else sha256(code.lower())  # Google: not hashed
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
        write_atomically(audience_table(platform, job, job.adds), path, "csv")
        removed: list[str] = []
        if job.export.mode == "delta" and job.removes.num_rows:
            remove_path = path.with_name(path.stem + ".remove.csv")
            write_atomically(audience_table(platform, job, job.removes), remove_path, "csv")
            removed = job.removes["customer_id"].to_pylist()
        return Delivery(
            location=str(path), sent=job.adds["customer_id"].to_pylist(), removed=removed, batches=1, attempts=1
        )
