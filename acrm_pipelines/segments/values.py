"""Filter values of behaviour conditions, checked against what the loaded data holds (`acrm validate`).

`{purchase: {category: [Cofee]}}` is a valid segment that silently selects nobody. The values a filter
can match are in the DuckDB file: the product catalogue (categories, brands, product ids), and the
distinct store ids, channels, event types, campaign ids and bonus reasons of the loaded activity. The
staging views are read, not the fact marts: they hold everything loaded, not only what happened before
the last run's as-of date, and every product, not only the ones sold.

A value the data does not hold is a **warning** (file:line:field with a did-you-mean), not an error: a
segment may rightly be written before the first order of a new category or the first send of a campaign.
When the DuckDB file or a table is missing, nothing is checked and a note says so. Dagster's definitions
load never runs this check (it must not open the DuckDB file a run may be writing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from acrm_pipelines.segments.spec import BehaviourCondition
from acrm_pipelines.sql import table_exists
from acrm_pipelines.yaml_specs import DefinitionError, Document, did_you_mean

# A list of the known values is shown (when nothing is close) only when it is this short.
SHOW_KNOWN = 12
# Candidates for a did-you-mean: enough for any catalogue of categories or campaigns, bounded for product ids.
MAX_CANDIDATES = 50_000


@dataclass(frozen=True)
class Column:
    table: str  # schema.name
    column: str
    noun: str  # what a value is, in the warning


COLUMNS: dict[tuple[str, str], Column] = {
    ("purchase", "category"): Column("staging.stg_crm__products", "category", "product category"),
    ("purchase", "brand"): Column("staging.stg_crm__products", "brand", "brand"),
    ("purchase", "product_id"): Column("staging.stg_crm__products", "product_id", "product id"),
    ("purchase", "store_id"): Column("staging.stg_crm__orders", "store_id", "store id"),
    ("purchase", "channel"): Column("staging.stg_crm__orders", "channel", "order channel"),
    ("event", "type"): Column("staging.stg_crm__events", "event_type", "event type"),
    ("event", "channel"): Column("staging.stg_crm__events", "channel", "event channel"),
    ("message", "channel"): Column("staging.stg_crm__messages", "channel", "message channel"),
    ("message", "campaign_id"): Column("staging.stg_crm__messages", "campaign_id", "campaign id"),
    ("bonus", "reason"): Column("staging.stg_crm__bonus_transactions", "reason", "bonus reason"),
}

Use = tuple[Document, list[str | int], str]  # where a value is written, and the value


@dataclass
class ValueCheck:
    warnings: list[DefinitionError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why


def _raw_at(data: Any, loc: Sequence[str | int]) -> Any:
    for part in loc:
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_list or (isinstance(data, dict) and part in data)):
            return None
        data = data[part]
    return data


def _value_loc(doc: Document, loc: list[str | int], source: str, name: str, index: int) -> list[str | int]:
    """Where the value is written: `event: x` (the shorthand), `event: [x, y]`, `purchase: {category: x}`."""
    raw = _raw_at(doc.data, [*loc, source])
    if source == "event" and name == "type" and isinstance(raw, str | list):
        base, written = [*loc, source], raw
    else:
        base, written = [*loc, source, name], raw.get(name) if isinstance(raw, dict) else None
    return [*base, index] if isinstance(written, list) else base


def used_values(
    behaviours: Sequence[tuple[Document, list[str | int], BehaviourCondition]],
) -> dict[tuple[str, str], list[Use]]:
    """Every filter value written, by (source, filter)."""
    used: dict[tuple[str, str], list[Use]] = {}
    for doc, loc, cond in behaviours:
        source = cond.source
        for src, name in COLUMNS:
            values = getattr(getattr(cond, source), name, None) if src == source else None
            for i, value in enumerate(values or []):
                used.setdefault((src, name), []).append((doc, _value_loc(doc, loc, src, name, i), value))
    return used


def check_values(
    behaviours: Sequence[tuple[Document, list[str | int], BehaviourCondition]],
    duckdb_path: Path,
    config: dict[str, str] | None = None,
) -> ValueCheck:
    """A warning for each filter value that the loaded data does not hold; notes for what was not checked."""
    out = ValueCheck()
    used = used_values(behaviours)
    if not used:
        return out
    nouns = ", ".join(sorted({COLUMNS[k].noun for k in used}))
    if not duckdb_path.exists():
        out.notes.append(
            f"filter values ({nouns}) were not checked against the data: no DuckDB file at {duckdb_path} yet "
            "(`acrm run --as-of DATE` loads it)"
        )
        return out
    try:
        con = duckdb.connect(str(duckdb_path), read_only=True, config=config or {})
    except duckdb.Error as err:  # e.g. a run is writing it
        out.notes.append(f"filter values ({nouns}) were not checked against the data: cannot open {duckdb_path}: {err}")
        return out
    with con:
        for key, uses in sorted(used.items()):
            _check_column(con, COLUMNS[key], uses, out)
    return out


def _check_column(con: duckdb.DuckDBPyConnection, col: Column, uses: list[Use], out: ValueCheck) -> None:
    schema, table = col.table.split(".")
    values = sorted({value for _, _, value in uses})
    try:
        if not table_exists(con, schema, table):
            out.notes.append(f"{col.noun} values were not checked: {col.table} is not in the DuckDB file yet")
            return
        # Names are from COLUMNS above, never from a definition; the values are parameters.
        rows = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {col.table} LIMIT 1)").fetchone()[0]
        if not rows:
            out.notes.append(f"{col.noun} values were not checked: {col.table} has no rows yet")
            return
        missing = {
            r[0]
            for r in con.execute(
                f"SELECT v FROM unnest(?::VARCHAR[]) t(v) EXCEPT SELECT CAST({col.column} AS VARCHAR) FROM {col.table}",
                [values],
            ).fetchall()
        }
        if not missing:
            return
        known = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT CAST({col.column} AS VARCHAR) AS v FROM {col.table} WHERE {col.column} IS NOT NULL "
                f"ORDER BY v LIMIT {MAX_CANDIDATES}"
            ).fetchall()
        ]
    except duckdb.Error as err:
        out.notes.append(f"{col.noun} values were not checked: reading {col.table} failed: {err}")
        return
    for doc, loc, value in uses:
        if value in missing:
            hint = did_you_mean(value, known)
            if not hint and len(known) <= SHOW_KNOWN:
                hint = f" (the data has: {', '.join(known)})"
            message = f"warning: no {col.noun} {value!r} in the loaded data{hint}; this value matches nothing"
            out.warnings.append(doc.error(loc, message))
