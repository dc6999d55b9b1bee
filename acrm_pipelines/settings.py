"""Settings from ``ACRM_*`` environment variables (the contract in docs/settings-and-cli.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def _path(name: str, default: str) -> Path:
    value = os.environ.get(name) or default
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


def _int(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"{name}: expected a whole number, got {value!r}") from err


def _hosts(name: str) -> tuple[str, ...]:
    """Comma-separated host names or IP addresses: no scheme, path or port (IPv6 has two colons or more)."""
    hosts = tuple(h.strip() for h in (os.environ.get(name) or "").split(",") if h.strip())
    for host in hosts:
        if any(c in host for c in "/@ \t") or host.count(":") == 1:
            raise ValueError(f"{name}: expected host names or IP addresses separated by commas, got {host!r}")
    return hosts


@dataclass(frozen=True)
class Settings:
    landing_dir: Path
    duckdb_path: Path
    segments_dir: Path
    exports_dir: Path
    outbox_dir: Path
    start_date: date
    default_region: str
    freshness_days: int = 3  # raw activity older than this before the as-of day warns
    # DuckDB's buffer pool (its default, 80 % of RAM, leaves no room for the segment engine's arrays;
    # a 10M-customer partition was killed by the kernel with it). Larger work spills to disk.
    duckdb_memory_limit: str = "8GB"
    # Webhook hosts besides loopback (127.0.0.0/8, ::1, localhost), e.g. ("hooks.example.com", "10.0.0.5").
    webhook_allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> Settings:
        start = os.environ.get("ACRM_START_DATE") or "2024-01-01"
        try:
            start_date = date.fromisoformat(start)
        except ValueError as err:
            raise ValueError(f"ACRM_START_DATE: expected YYYY-MM-DD, got {start!r}") from err
        return cls(
            landing_dir=_path("ACRM_LANDING_DIR", "data/landing"),
            duckdb_path=_path("ACRM_DUCKDB_PATH", "data/acrm.duckdb"),
            segments_dir=_path("ACRM_SEGMENTS_DIR", "segments"),
            exports_dir=_path("ACRM_EXPORTS_DIR", "exports"),
            outbox_dir=_path("ACRM_OUTBOX_DIR", "data/outbox"),
            start_date=start_date,
            default_region=(os.environ.get("ACRM_DEFAULT_REGION") or "RU").upper(),
            freshness_days=_int("ACRM_FRESHNESS_DAYS", 3),
            duckdb_memory_limit=os.environ.get("ACRM_DUCKDB_MEMORY_LIMIT") or "8GB",
            webhook_allowed_hosts=_hosts("ACRM_WEBHOOK_ALLOWED_HOSTS"),
        )

    def duckdb_config(self) -> dict[str, str]:
        return {"memory_limit": self.duckdb_memory_limit}


def quiet_telemetry() -> None:
    """Personal data lives here: keep dbt, Dagster and Great Expectations from phoning home."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # GX's progress bars would flood run logs
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
