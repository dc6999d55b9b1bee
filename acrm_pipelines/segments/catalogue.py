"""The feature catalogue the segment language may use: `marts.customer_features` columns and types.

The source of truth is the dbt model's YAML (dbt_project/models/marts/customer_features.yml), read from
dbt's manifest (the one dagster-dbt loads, written by `make setup`'s `dbt parse`), so the validator needs
no database. `custom_*` columns exist only once data is loaded: their types are read
from the DuckDB file when it has the mart, and otherwise any `custom_*` name is accepted as `any`.
Columns with `meta: {personal: true}` there hold personal data (names, contacts, birth date).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from acrm_pipelines.features.history import feature_columns
from acrm_pipelines.settings import DBT_PROJECT_DIR

Kind = Literal["text", "number", "date", "timestamp", "boolean", "list", "any"]
MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
MODEL = "customer_features"


def kind_of(sql_type: str) -> Kind:
    t = sql_type.strip().lower()
    if t.endswith("[]") or t.startswith("array<"):  # DuckDB's VARCHAR[], Spark's array<string>
        return "list"
    if t.startswith(("varchar", "text", "string")):
        return "text"
    if t.startswith(("int", "bigint", "smallint", "tinyint", "hugeint", "decimal", "numeric", "double", "float")):
        return "number"
    if t == "date":
        return "date"
    if t.startswith("timestamp"):
        return "timestamp"
    if t.startswith("bool"):
        return "boolean"
    return "any"


@dataclass
class Catalogue:
    columns: dict[str, Kind] = field(default_factory=dict)
    custom_known: bool = False  # False: custom_* types are not known yet (no data loaded)
    personal: frozenset[str] = frozenset()  # columns holding personal data

    def is_personal(self, name: str) -> bool:
        return name in self.personal

    def kind(self, name: str) -> Kind | None:
        if name in self.columns:
            return self.columns[name]
        if name.startswith("custom_") and not self.custom_known:
            return "any"
        return None

    def names(self) -> list[str]:
        return sorted(self.columns)


def _personal(column: dict) -> bool:
    """`meta: {personal: true}`, or the same under `config:` (where dbt >= 1.10 prefers column meta)."""
    metas = (column.get("meta"), (column.get("config") or {}).get("meta"))
    return any(isinstance(m, dict) and m.get("personal") is True for m in metas)


def load_catalogue(duckdb_path: Path | None = None) -> Catalogue:
    if not MANIFEST.exists():
        raise FileNotFoundError(f"{MANIFEST} is missing: run `make setup` (it runs `dbt parse`)")
    nodes = json.loads(MANIFEST.read_text())["nodes"].values()
    model = next(n for n in nodes if n["resource_type"] == "model" and n["name"] == MODEL)
    declared = model["columns"].values()
    columns: dict[str, Kind] = {c["name"]: kind_of(c.get("data_type") or "") for c in declared}
    cat = Catalogue(columns, personal=frozenset(c["name"] for c in declared if _personal(c)))
    if duckdb_path is not None and duckdb_path.exists():
        try:
            with duckdb.connect(str(duckdb_path), read_only=True) as con:
                found = feature_columns(con)
        except duckdb.Error:
            found = {}  # the file is busy with a writer: the declared columns only
        if found:
            cat.custom_known = True
            cat.columns |= {name: kind_of(t) for name, t in found.items() if name.startswith("custom_")}
    return cat
