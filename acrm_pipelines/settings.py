"""Settings from ``ACRM_*`` environment variables (the contract in docs/settings-and-cli.md)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
ENV_PREFIX = "ACRM_"
ENGINES = ("duckdb", "spark")


def _variable(info: ValidationInfo) -> str:
    return f"{ENV_PREFIX}{str(info.field_name).upper()}"


class _Environment(BaseSettings):
    """The ``ACRM_*`` variables as written: exact (upper-case) names, an empty value counts as unset, no .env file.

    Each field reads ``ACRM_<FIELD NAME IN UPPER CASE>``. Values are converted by the validators below rather than
    by pydantic's own coercion, so that what is accepted, and the error messages, stay those of the contract.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_prefix_target="alias",
        alias_generator=str.upper,
        case_sensitive=True,
        env_ignore_empty=True,
        validate_default=True,
        frozen=True,
    )

    # In the order the variables are checked: the first bad one is reported.
    start_date: date = date(2024, 1, 1)
    landing_dir: Path = Path("data/landing")
    duckdb_path: Path = Path("data/acrm.duckdb")
    segments_dir: Path = Path("segments")
    exports_dir: Path = Path("exports")
    outbox_dir: Path = Path("data/outbox")
    default_region: str = "RU"
    # Raw activity older than this before the as-of day warns.
    freshness_days: int = 3
    # DuckDB's buffer pool (its default, 80 % of RAM, leaves no room for the segment engine's arrays;
    # a 10M-customer partition was killed by the kernel with it). Larger work spills to disk.
    duckdb_memory_limit: str = "8GB"
    # Webhook hosts besides loopback (127.0.0.0/8, ::1, localhost), e.g. ("hooks.example.com", "10.0.0.5").
    webhook_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    # How long after a send or a click an order counts for a campaign no export sets a window for.
    attribution_window: str = "7d"
    # Journey definitions, and how often the journeys sensor ticks them between nights (docs/journeys.md).
    journeys_dir: Path = Path("journeys")
    journey_tick_minutes: int = 15
    # Where features and segments run (docs/spark.md): DuckDB on this machine, or Apache Spark.
    engine: str = "duckdb"
    # Spark's session: the master URL, the warehouse and metastore folder, memory, shuffle partitions.
    spark_master: str = "local[2]"
    spark_dir: Path = Path("data/spark")
    spark_driver_memory: str = "4g"
    spark_executor_memory: str = "4g"
    spark_shuffle_partitions: int = 4

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value.strip().lower() not in ENGINES:
            raise ValueError(f"{_variable(info)}: expected one of {', '.join(ENGINES)}, got {value!r}")
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("spark_driver_memory", "spark_executor_memory", mode="before")
    @classmethod
    def _memory(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not re.fullmatch(r"\s*[1-9][0-9]*\s*[mMgG]\s*", value):
            raise ValueError(f"{_variable(info)}: expected an amount like 512m or 4g, got {value!r}")
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("start_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return date.fromisoformat(value)
        except ValueError as err:
            raise ValueError(f"{_variable(info)}: expected YYYY-MM-DD, got {value!r}") from err

    @field_validator(
        "landing_dir",
        "duckdb_path",
        "segments_dir",
        "exports_dir",
        "outbox_dir",
        "journeys_dir",
        "spark_dir",
        mode="before",
    )
    @classmethod
    def _from_repo_root(cls, value: Any) -> Path:
        """Relative paths are taken from the repository root."""
        path = Path(value)
        return path if path.is_absolute() else REPO_ROOT / path

    @field_validator("default_region", mode="after")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("freshness_days", "journey_tick_minutes", "spark_shuffle_partitions", mode="before")
    @classmethod
    def _whole_number(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return int(value)
        except ValueError as err:
            raise ValueError(f"{_variable(info)}: expected a whole number, got {value!r}") from err

    @field_validator("attribution_window", mode="before")
    @classmethod
    def _fixed_window(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not re.fullmatch(r"\s*[1-9][0-9]{0,5}\s*[hdw]\s*", value):
            raise ValueError(f"{_variable(info)}: expected hours, days or weeks (12h, 7d, 2w), got {value!r}")
        return value.strip() if isinstance(value, str) else value

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any, info: ValidationInfo) -> Any:
        """Comma-separated host names or IP addresses: no scheme, path or port (IPv6 has two colons or more)."""
        if not isinstance(value, str):
            return value
        hosts = tuple(h.strip() for h in value.split(",") if h.strip())
        for host in hosts:
            if any(c in host for c in "/@ \t") or host.count(":") == 1:
                raise ValueError(
                    f"{_variable(info)}: expected host names or IP addresses separated by commas, got {host!r}"
                )
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
    freshness_days: int
    duckdb_memory_limit: str
    webhook_allowed_hosts: tuple[str, ...]
    attribution_window: str
    journeys_dir: Path = REPO_ROOT / "journeys"
    journey_tick_minutes: int = 15
    engine: str = "duckdb"
    spark_master: str = "local[2]"
    spark_dir: Path = REPO_ROOT / "data" / "spark"
    spark_driver_memory: str = "4g"
    spark_executor_memory: str = "4g"
    spark_shuffle_partitions: int = 4

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of the environment; a bad value raises ValueError naming the variable and the value."""
        try:
            env = _Environment()
        except ValidationError as err:
            first = err.errors()[0]
            error = first.get("ctx", {}).get("error")
            if isinstance(error, ValueError):  # a validator's own: raised as it was, not wrapped by pydantic
                raise error from error.__cause__
            variable = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else ENV_PREFIX
            raise ValueError(f"{variable}: {first['msg']}") from err
        return cls(**env.model_dump())

    def duckdb_config(self) -> dict[str, str]:
        return {"memory_limit": self.duckdb_memory_limit}


def quiet_telemetry() -> None:
    """Personal data lives here: keep dbt, Dagster and Great Expectations from phoning home."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # GX's progress bars would flood run logs
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
