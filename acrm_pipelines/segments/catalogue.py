"""The feature catalogue the segment language may use: `marts.customer_features` columns and types.

The source of truth is the dbt model's YAML (dbt_project/models/marts/customer_features.yml), so the
validator needs no database. `custom_*` columns exist only once data is loaded: their types are read
from the DuckDB file when it has the mart, and otherwise any `custom_*` name is accepted as `any`.
Columns with `meta: {personal: true}` there hold personal data (names, contacts, birth date).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import yaml

from acrm_pipelines.settings import DBT_PROJECT_DIR

Kind = Literal["text", "number", "date", "timestamp", "boolean", "list", "any"]
MART_YML = DBT_PROJECT_DIR / "models" / "marts" / "customer_features.yml"


def kind_of(sql_type: str) -> Kind:
    t = sql_type.strip().lower()
    if t.endswith("[]"):
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
    spec = yaml.safe_load(MART_YML.read_text())
    model = next(m for m in spec["models"] if m["name"] == "customer_features")
    columns: dict[str, Kind] = {c["name"]: kind_of(c.get("data_type", "")) for c in model["columns"]}
    cat = Catalogue(columns, personal=frozenset(c["name"] for c in model["columns"] if _personal(c)))
    if duckdb_path is not None and duckdb_path.exists():
        try:
            with duckdb.connect(str(duckdb_path), read_only=True) as con:
                rows = con.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'marts' AND table_name = 'customer_features'"
                ).fetchall()
        except duckdb.Error:
            rows = []  # the file is busy with a writer: fall back to the YAML
        if rows:
            cat.custom_known = True
            for name, sql_type in rows:
                if name.startswith("custom_"):
                    cat.columns[name] = kind_of(sql_type)
    return cat
