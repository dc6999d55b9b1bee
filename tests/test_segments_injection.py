"""No definition can change the structure of the SQL: hostile values stay literals, hostile names fail validation."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import sqlglot
import yaml
from sqlglot import exp

from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.compile import explain_sql
from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.yaml_specs import DefinitionErrors

HOSTILE = [
    "x'; DROP TABLE marts.customer_features; --",
    "x' OR '1'='1",
    'x" OR "1"="1',
    "x/* comment */",
    "x\\'; SELECT 1; --",
    "Москва'; --",
    "x\u2019; DROP TABLE t; --",
    "$$; DROP TABLE t; $$",
    "x\nOR 1=1",
]


def shape(sql: str) -> str:
    """The SQL tree with every string literal replaced: what remains is the structure."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    for lit in tree.find_all(exp.Literal):
        if lit.is_string:
            lit.replace(exp.Literal.string("?"))
    for ident in tree.find_all(exp.Identifier):
        if re.fullmatch(r"b_[0-9a-f]{10}", ident.name):  # aggregate names hash their filter values
            ident.replace(exp.to_identifier("b_agg", quoted=True))
    return tree.sql("duckdb")


def seg_yaml(value: str) -> str:
    rules = {
        "any": [
            {"field": "city", "op": "=", "value": value},
            {"field": "city", "op": "in", "value": [value, "Omsk"]},
            {"field": "tags", "op": "has_tag", "value": value},
            {"field": "city", "op": "contains", "value": value},
            {"event": {"type": [value], "channel": value}, "within": "3d", "count": {">=": 1}},
        ]
    }
    return yaml.safe_dump({"key": "probe", "rules": rules, "split": {"control": 10, "salt": value}})


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_plain_literals(tmp_path: Path, value: str, make_marts, segment_set) -> None:
    con = make_marts(
        tmp_path / "db.duckdb",
        f"SELECT * FROM (VALUES ('c1', 'Kazan', ['vip']), ('c2', {exp.Literal.string(value).sql('duckdb')}, "
        "['x'])) t(customer_id, city, tags)",
    )
    cat = load_catalogue()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    hostile_set = segment_set(tmp_path / "a", seg_yaml(value))
    plain_set = segment_set(tmp_path / "b", seg_yaml("plain"))
    hostile_sql = explain_sql("probe", hostile_set, cat, date(2024, 1, 1))
    plain_sql = explain_sql("probe", plain_set, cat, date(2024, 1, 1))
    assert shape(hostile_sql) == shape(plain_sql)
    result = evaluate(con, hostile_set, date(2024, 1, 1))
    # The customer whose city *is* the hostile text matches it as a value; nothing else happened.
    assert result.members("probe") == ["c2"]
    assert con.execute("SELECT count(*) FROM marts.customer_features").fetchone()[0] == 2


@pytest.mark.parametrize(
    "field",
    ["city; DROP TABLE x", 'city" OR 1=1 --', "city --", "cíty", "marts.customer_features.city", "*"],
)
def test_hostile_field_names_are_rejected(tmp_path: Path, field: str, segment_set) -> None:
    with pytest.raises(DefinitionErrors) as info:
        segment_set(tmp_path, yaml.safe_dump({"key": "probe", "rules": {"field": field, "op": "is_null"}}))
    assert "unknown feature" in str(info.value)


@pytest.mark.parametrize("key", ["a; drop", "A", "x" * 70, "a-b", "ключ"])
def test_hostile_keys_are_rejected(tmp_path: Path, key: str, segment_set) -> None:
    with pytest.raises(DefinitionErrors, match="key: .* is not allowed: use 1 to 63 lower-case letters"):
        segment_set(tmp_path, yaml.safe_dump({"key": key, "rules": {"field": "city", "op": "is_null"}}))
