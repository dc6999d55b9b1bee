"""`acrm explain --dialect postgres|spark` prints SQL that runs there and selects what DuckDB selects.

One small hand-made set of marts (every column of customer_features.yml, three custom columns, the fact
marts) is loaded into a DuckDB file and into the real PostgreSQL server the tests start
(tests/pg_server.py), in a database of its own. Its text columns there use a linguistic ICU collation
(when the server has ICU), so that text order not written in bytes shows. For segments covering every
construct of the language, at two as-of dates (a leap and a non-leap year):

- PostgreSQL: the explained SQL runs on the server (in a session whose DateStyle is not ISO) and its
  members (and arms) equal those of the DuckDB-dialect SQL on the DuckDB file, which equal the engine's
  (`evaluate`); a few are also written by hand below.
- Spark: pyspark is not installed in .venv (and this test installs no Java or Spark), so Spark SQL is
  not executed here; running it on Spark is issue 16's. Every statement is parsed by sqlglot's Spark
  dialect and printed back unchanged; holds none of what Spark lacks or refuses (UBIGINT, BIT, aggregate
  `FILTER` clauses, an `IN (subquery)` outside WHERE); and, read as Spark SQL and transpiled to DuckDB by
  sqlglot (with a `conv` of Spark's meaning), selects the same members on the DuckDB file, so a Spark
  function used with another meaning (argument order, base conversion) would show.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg
import pytest
import sqlglot
import yaml
from psycopg import sql
from sqlglot import exp

from acrm_pipelines.cli import main
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.compile import CompileError, explain_sql
from acrm_pipelines.segments.evaluate import evaluate
from acrm_pipelines.segments.validate import load_segments
from acrm_pipelines.settings import DBT_PROJECT_DIR

MAR = date(2024, 3, 31)  # 2024 is a leap year
DEC = date(2025, 12, 30)  # 2025 is not: 29 February counts as 1 March
AS_OFS = (MAR, DEC)
DATABASE = "acrm_explain"

CUSTOM = {"custom_tier": "VARCHAR", "custom_score": "DOUBLE", "custom_visits": "BIGINT"}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def d(text: str) -> date:
    return date.fromisoformat(text)


# --- the marts ----------------------------------------------------------------------------------------------

CUSTOMERS = [
    {
        "customer_id": "b_dec02",
        "city": "Omsk",
        "birth_date": d("1980-12-02"),
        "registered_at": ts("2020-01-01 00:00:00"),
        "tags": ["vip"],
        "consent_email": True,
        "email": "a@x.ru",
        "total_amount": Decimal("25000.00"),
        "orders_count": 5,
        "last_order_date": d("2023-10-01"),
        "last_visit_at": ts("2024-03-30 10:00:00"),
        "custom_tier": "gold",
        "custom_score": 1.5,
        "custom_visits": 3,
    },
    {
        "customer_id": "b_dec31",
        "city": "Omsk",
        "birth_date": d("1990-12-31"),
        "registered_at": ts("2024-03-20 08:00:00.5"),
        "tags": ["new", "vip"],
        "consent_email": True,
        "email": "b@x.ru",
        "total_amount": Decimal("100.50"),
        "orders_count": 1,
        "last_order_date": d("2024-03-25"),
        "last_visit_at": ts("2024-03-31 23:00:00"),
        "custom_tier": "silver",
        "custom_score": 100.0,
        "custom_visits": 0,
    },
    {
        "customer_id": "b_jan03",
        "birth_date": d("1985-01-03"),
        "registered_at": ts("2024-01-01 23:30:00"),
        "tags": [],
        "consent_email": False,
        "total_amount": Decimal("0"),
        "orders_count": 0,
    },
    {
        "customer_id": "b_feb29",
        "city": "Kazan",
        "birth_date": d("1992-02-29"),
        "registered_at": ts("2019-05-05 05:05:05"),
        "consent_email": True,
        "email": "c@x.ru",
        "total_amount": Decimal("20000.00"),
        "orders_count": 3,
        "last_order_date": d("2023-12-15"),
        "last_visit_at": ts("2024-02-01 12:00:00"),
        "custom_tier": "gold",
        "custom_score": 2.25,
        "custom_visits": 10,
    },
    {
        "customer_id": "b_mar01",
        "city": "amur",
        "birth_date": d("1991-03-01"),
        "registered_at": ts("2023-12-31 23:59:59"),
        "tags": ["vip", "tea"],
        "email": "d@x.ru",
        "total_amount": Decimal("999.99"),
        "orders_count": 2,
        "last_order_date": d("2024-03-01"),
        "custom_tier": "bronze",
        "custom_score": -3.0,
        "custom_visits": 1,
    },
    {
        "customer_id": "c_bor",
        "city": "Bor",
        "registered_at": ts("2022-06-06 12:00:00"),
        "tags": ["tea"],
        "consent_email": True,
        "email": "e@y.com",
        "total_amount": Decimal("50000.00"),
        "orders_count": 12,
        "last_order_date": d("2024-03-31"),
        "custom_tier": "gold",
        "custom_score": 0.1,
        "custom_visits": 7,
    },
    {
        "customer_id": "c_kz",
        "city": "Kazan",
        "birth_date": d("2000-03-31"),
        "registered_at": ts("2021-01-01 00:00:00"),
        "consent_email": True,
        "email": "kz@x.ru",
        "total_amount": Decimal("300.00"),
        "orders_count": 1,
        "last_order_date": d("2023-01-01"),
        "custom_tier": "silver",
        "custom_visits": 2,
    },
    {
        "customer_id": "c_moscow",
        "city": "Moscow",
        "birth_date": d("1970-04-02"),
        "registered_at": ts("2018-01-01 00:00:00"),
        "consent_email": True,
        "email": "m@x.ru",
        "total_amount": Decimal("30000.00"),
        "orders_count": 8,
        "last_order_date": d("2023-09-01"),
        "custom_tier": "gold",
    },
    {"customer_id": "c_none", "total_amount": Decimal("0"), "orders_count": 0},
]
EVERYONE = {c["customer_id"] for c in CUSTOMERS}

FACT_ROWS = {
    "fct_orders": [
        # order_id, customer_id, ordered_at, total_amount, status, store_id, channel
        ("o1", "b_dec02", ts("2024-03-30 12:00:00"), Decimal("1200.00"), "completed", "s1", "web"),
        ("o2", "b_dec31", ts("2024-03-25 09:00:00"), Decimal("100.50"), "completed", "s2", "app"),
        ("o3", "b_mar01", ts("2024-03-01 00:00:00"), Decimal("999.99"), "completed", "s1", "web"),
        ("o4", "c_bor", ts("2024-03-31 23:59:59"), Decimal("600.00"), "completed", "s1", "app"),
        ("o5", "c_bor", ts("2024-03-10 10:00:00"), Decimal("400.00"), "cancelled", "s1", "web"),
        ("o6", "c_bor", ts("2024-01-15 10:00:00"), Decimal("700.00"), "completed", "s2", "web"),
        ("o7", "b_feb29", ts("2023-12-15 10:00:00"), Decimal("20000.00"), "completed", "s1", "web"),
        ("o8", "c_kz", ts("2024-04-01 00:00:00"), Decimal("50.00"), "completed", "s1", "web"),
        ("o9", "b_dec02", ts("2025-12-29 10:00:00"), Decimal("300.00"), "completed", "s1", "web"),
    ],
    "fct_order_lines": [
        # order_id, customer_id, ordered_at, status, store_id, channel, product_id, product_name, category,
        # brand, quantity, price, line_amount
        ("o1", "b_dec02", ts("2024-03-30 12:00:00"), "completed", "s1", "web", "p_tea", "Tea", "Chinese tea", "A", 2)
        + (Decimal("300.00"), Decimal("600.00")),
        ("o1", "b_dec02", ts("2024-03-30 12:00:00"), "completed", "s1", "web", "p_cup", "Cup", "Teaware", "B", 1)
        + (Decimal("600.00"), Decimal("600.00")),
        ("o3", "b_mar01", ts("2024-03-01 00:00:00"), "completed", "s1", "web", "p_tea", "Tea", "Chinese tea", "A", 3)
        + (Decimal("333.33"), Decimal("999.99")),
        ("o4", "c_bor", ts("2024-03-31 23:59:59"), "completed", "s1", "app", "p_tea", "Tea", "Chinese tea", "A", 1)
        + (Decimal("600.00"), Decimal("600.00")),
        ("o5", "c_bor", ts("2024-03-10 10:00:00"), "cancelled", "s1", "web", "p_tea", "Tea", "Chinese tea", "A", 4)
        + (Decimal("100.00"), Decimal("400.00")),
        ("o6", "c_bor", ts("2024-01-15 10:00:00"), "completed", "s2", "web", "p_cof", "Coffee", "Coffee", "C", 7)
        + (Decimal("100.00"), Decimal("700.00")),
        ("o9", "b_dec02", ts("2025-12-29 10:00:00"), "completed", "s1", "web", "p_tea", "Tea", "Chinese tea", "A", 1)
        + (Decimal("300.00"), Decimal("300.00")),
    ],
    "fct_events": [
        # customer_id, occurred_at, event_type, channel, properties
        ("b_dec31", ts("2024-03-31 00:00:00"), "site_visit", "web", None),
        ("b_dec31", ts("2024-03-30 22:00:00"), "site_visit", "app", None),
        ("b_dec02", ts("2024-03-31 23:59:59"), "cart_abandon", "web", None),
        ("c_bor", ts("2024-03-29 10:00:00"), "site_visit", "web", None),
        ("c_bor", ts("2024-03-29 11:00:00"), "site_visit", "web", None),
        ("c_bor", ts("2024-03-31 10:00:00"), "app_open", "app", None),
        ("c_kz", ts("2024-04-01 00:00:00"), "site_visit", "web", None),
        ("b_jan03", ts("2024-03-31 20:00:00"), "cart_abandon", "app", None),
        ("b_dec02", ts("2025-12-30 08:00:00"), "site_visit", "web", None),
    ],
    "fct_messages": [
        # message_id, customer_id, campaign_id, channel, sent_at, delivered_at, opened_at, clicked_at,
        # complained_at, unsubscribed_at
        ("m1", "b_dec02", "c1", "email", ts("2024-03-28 09:00:00"), ts("2024-03-28 09:01:00"))
        + (ts("2024-03-29 08:00:00"), ts("2024-03-29 10:00:00"), None, None),
        ("m2", "b_dec02", "c2", "email", ts("2024-03-30 09:00:00"), None, ts("2024-03-31 07:00:00"), None, None, None),
        ("m3", "b_dec31", "c1", "sms", ts("2024-03-28 09:00:00"), None, None, None, None, None),
        ("m4", "c_moscow", "c1", "email", ts("2024-02-01 09:00:00"), None, None, None, ts("2024-02-02 09:00:00"), None),
        ("m5", "b_mar01", "c2", "email", ts("2024-02-10 09:00:00"), None, ts("2024-03-20 10:00:00"))
        + (ts("2024-04-02 10:00:00"), None, None),
    ],
    "fct_bonus_transactions": [
        # customer_id, occurred_at, points, reason
        ("b_feb29", ts("2024-03-05 10:00:00"), Decimal("500.00"), "purchase"),
        ("b_feb29", ts("2024-03-06 10:00:00"), Decimal("-200.00"), "redemption"),
        ("c_bor", ts("2023-06-01 10:00:00"), Decimal("1500.00"), "birthday"),
        ("c_bor", ts("2024-03-30 10:00:00"), Decimal("100.00"), "purchase"),
    ],
}


MART_YML = DBT_PROJECT_DIR / "models" / "marts" / "customer_features.yml"  # read here, apart from the code


def feature_columns() -> dict[str, str]:
    """customer_features' columns and DuckDB types: the dbt model's YAML, then the custom columns."""
    spec = yaml.safe_load(MART_YML.read_text())
    model = next(m for m in spec["models"] if m["name"] == "customer_features")
    types = {c["name"]: c["data_type"].upper() for c in model["columns"]}
    types = {k: "DECIMAL(18,2)" if t == "DECIMAL" else t for k, t in types.items()}
    return types | CUSTOM


def fact_columns(ddl: str) -> dict[str, str]:
    """A fact mart's columns and types, from its DDL (the `fact_tables` fixture's)."""
    return dict(part.strip().split(" ", 1) for part in re.split(r",\s*(?![0-9])", ddl))


def pg_type(duck: str, collation: str | None) -> sql.Composable:
    t = duck.upper()
    if t == "VARCHAR[]":
        return sql.SQL("text[]")
    if t == "VARCHAR":
        return sql.SQL("text COLLATE {}").format(sql.Identifier(collation)) if collation else sql.SQL("text")
    if t.startswith("DECIMAL"):
        return sql.SQL(t.replace("DECIMAL", "numeric"))
    return sql.SQL({"DOUBLE": "double precision"}.get(t, t.lower()))


def feature_rows(columns: dict[str, str]) -> list[tuple]:
    return [tuple(c.get(name) for name in columns) for c in CUSTOMERS]


@pytest.fixture(scope="module")
def duck(tmp_path_factory, fact_tables) -> Path:
    path = tmp_path_factory.mktemp("explain") / "acrm.duckdb"
    columns = feature_columns()
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        defs = ", ".join(f'"{n}" {t}' for n, t in columns.items())
        con.execute(f"CREATE TABLE marts.customer_features ({defs})")
        marks = ", ".join("?" for _ in columns)
        con.executemany(f"INSERT INTO marts.customer_features VALUES ({marks})", feature_rows(columns))
        for name, rows in FACT_ROWS.items():
            con.execute(f"CREATE TABLE marts.{name} ({fact_tables[name]})")
            con.executemany(f"INSERT INTO marts.{name} VALUES ({', '.join('?' for _ in rows[0])})", rows)
    return path


@pytest.fixture(scope="module")
def pg(postgres_dsn, fact_tables) -> tuple[str, str | None]:
    """(DSN of a database of its own with the same marts, the collation of its text columns)."""
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    dsn = re.sub(r"dbname=\S+", f"dbname={DATABASE}", postgres_dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        icu = conn.execute("SELECT count(*) FROM pg_collation WHERE collname = 'en-x-icu'").fetchone()[0]
        collation = "en-x-icu" if icu else None  # sorts 'amur' before 'Bor'; bytes sort it after
        conn.execute("CREATE SCHEMA marts")
        tables = {"customer_features": feature_columns()} | {
            name: fact_columns(ddl) for name, ddl in fact_tables.items()
        }
        for name, columns in tables.items():
            conn.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    sql.Identifier("marts", name),
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(c), pg_type(t, collation)) for c, t in columns.items()
                    ),
                )
            )
            rows = feature_rows(columns) if name == "customer_features" else FACT_ROWS[name]
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {} VALUES ({})").format(
                        sql.Identifier("marts", name), sql.SQL(", ").join(sql.Placeholder() * len(columns))
                    ),
                    rows,
                )
    return dsn, collation


# --- segments -----------------------------------------------------------------------------------------------

SEGMENTS = """
key: text_lt
rules: {field: city, op: "<", value: Kz}
---
key: text_ops
rules: {all: [{field: city, op: "!=", value: Moscow}, {field: city, op: not_in, value: [Omsk]}]}
---
key: text_between
rules: {field: custom_tier, op: between, value: [bronze, gold]}
---
key: text_in_or_contains
rules: {any: [{field: city, op: in, value: [Omsk, amur]}, {field: email, op: contains, value: "@y."}]}
---
key: not_kazan
rules: {not: {field: city, op: "=", value: Kazan}}
---
key: numbers
rules: {all: [{field: total_amount, op: ">=", value: 20000}, {field: orders_count, op: between, value: [2, 10]}]}
---
key: number_in
rules: {any: [{field: orders_count, op: in, value: [1, 12]}, {field: total_amount, op: "=", value: 999.99}]}
---
key: consented
rules: {field: consent_email, op: "=", value: true}
---
key: not_consented
rules: {not: {field: consent_email, op: "=", value: true}}
---
key: no_birth_date
rules: {field: birth_date, op: is_null}
---
key: has_email
rules: {field: email, op: is_not_null}
---
key: ordered_30d
rules: {field: last_order_date, op: ">=", value: -30d}
---
key: order_dates
rules: {field: last_order_date, op: in, value: ["2024-03-01", "2023-12-15"]}
---
key: registered_3m
rules: {field: registered_at, op: between, value: [-3M, today]}
---
key: registered_not_in
rules: {field: registered_at, op: not_in, value: ["2024-01-01", "2020-01-01"]}
---
key: visited_1d
rules: {field: last_visit_at, op: ">=", value: -1d}
---
key: vip
rules: {field: tags, op: has_tag, value: vip}
---
key: no_tea_tag
rules: {not: {field: tags, op: contains, value: tea}}
---
key: bday_wrap
rules: {field: birth_date, op: between, value: ["12-02", "01-03"], ignore_year: true}
---
key: bday_soon
rules: {field: birth_date, op: between, value: [today, +3d], ignore_year: true}
---
key: bday_mar01
rules: {field: birth_date, op: "=", value: "03-01", ignore_year: true}
---
key: anniversary
rules: {field: registered_at, op: "=", value: "01-01", ignore_year: true}
---
key: consent_not_false
rules: {field: consent_email, op: "!=", value: false}
---
key: ordered_by_mid_december
rules: {field: last_order_date, op: "<=", value: "2023-12-15"}
---
key: orders_not_in
rules: {field: orders_count, op: not_in, value: [0, 1]}
---
key: custom_range
rules: {field: custom_visits, op: between, value: [1, 7]}
---
key: custom_number
rules: {field: custom_score, op: ">", value: 1}
---
key: custom_text
rules: {field: custom_tier, op: in, value: [gold]}
---
key: bought_7d
rules: {purchase: {}, within: 7d, count: {">=": 1}}
---
key: no_order_90d
rules: {purchase: {}, within: 90d, count: {"=": 0}}
---
key: tea_3m
rules: {purchase: {category: [Chinese tea]}, within: 3M, sum_amount: {">=": 600}}
---
key: tea_quantity
rules: {purchase: {category: Chinese tea, status: [completed, cancelled]}, within: 1y, sum_quantity: {">=": 5}}
---
key: web_products_1m
rules: {purchase: {channel: web}, within: 1M, distinct_products: {">=": 2}}
---
key: two_categories
rules: {purchase: {}, within: 1y, distinct_categories: {"=": 2}}
---
key: store_amount_2w
rules: {purchase: {store_id: s1}, within: 2w, sum_amount: {">": 1000}}
---
key: active_days
rules: {event: {type: [site_visit, app_open]}, within: 3d, distinct_days: {">=": 2}}
---
key: web_visit_24h
rules: {event: {type: site_visit, channel: web}, within: 24h, count: {">=": 1}}
---
key: clicked_6d
rules: {message: {channel: email, action: clicked}, within: 6d, count: {">=": 1}}
---
key: opened_campaigns
rules: {message: {action: opened}, within: 30d, distinct_campaigns: {">=": 2}}
---
key: sms_7d
rules: {message: {channel: sms, campaign_id: [c1]}, within: 7d, count: {"=": 1}}
---
key: complained_90d
rules: {message: {action: complained}, within: 90d, count: {">=": 1}}
---
key: bonus_net
rules: {bonus: {}, within: 1M, sum_points: {"=": 300}}
---
key: bonus_redeemed
rules: {bonus: {sign: redemption}, within: 1y, sum_points: {"<": 0}}
---
key: bonus_accruals
rules: {bonus: {sign: accrual, reason: [purchase, birthday]}, within: 1y, count: {">=": 2}}
---
key: cart_no_buy
rules:
  all:
    - {event: cart_abandon, within: 7d, count: {">=": 1}}
    - {purchase: {}, within: 7d, count: {"=": 0}}
---
key: nested
rules:
  any:
    - all: [{field: total_amount, op: ">", value: 10000}, {not: {field: city, op: in, value: [Moscow]}}]
    - {not: {any: [{field: orders_count, op: ">", value: 0}, {field: consent_email, op: "=", value: false}]}}
---
key: set_ops
from: {union: [bday_wrap, vip], intersect: [consented], minus: [complained_90d]}
---
key: set_ops_rules
from: {union: [consented], minus: [vip]}
rules: {field: orders_count, op: ">=", value: 3}
---
key: offers
priority: [bday_wrap, vip, numbers]
---
key: offers_omsk
priority: [vip, bday_wrap]
rules: {field: city, op: "=", value: Omsk}
---
key: xmas_control
rules: {field: birth_date, op: between, value: ["12-02", "01-03"], ignore_year: true}
split: {control: 10%, salt: xmas-2025}
---
key: xmas_abc
rules: {field: birth_date, op: between, value: ["12-02", "01-03"], ignore_year: true}
split: {arms: {a: 40, b: 50, c: 10}, salt: xmas-2025}
---
key: thirds
from: {union: [has_email, no_birth_date]}
split: {arms: {x: 1, y: 1, z: 1}, salt: thirds}
---
key: by_city
from: {union: [has_email, no_birth_date]}
split: {by_field: city}
---
key: by_consent
rules: {field: orders_count, op: ">=", value: 0}
split: {by_field: consent_email}
---
key: by_last_order
rules: {field: orders_count, op: ">=", value: 0}
split: {by_field: last_order_date}
---
key: by_registered
rules: {field: orders_count, op: ">=", value: 0}
split: {by_field: registered_at}
---
key: by_amount
rules: {field: orders_count, op: ">=", value: 0}
split: {by_field: total_amount}
---
key: by_orders
rules: {field: orders_count, op: ">=", value: 0}
split: {by_field: orders_count}
---
key: by_visits
rules: {field: orders_count, op: ">=", value: 0}
split: {by_field: custom_visits}
---
key: by_tier
rules: {field: orders_count, op: ">=", value: 0}
split: {by_field: custom_tier}
---
key: by_score
rules: {field: orders_count, op: ">=", value: 0}
split: {by_field: custom_score}
---
key: built_on_a_double_split
from: {union: [by_score]}
rules: {field: orders_count, op: ">", value: 0}
"""
REFUSED = {"by_score"}  # DOUBLE text differs: DuckDB 100.0, PostgreSQL 100, Spark 1.0E20 for 1e+20

# Written by hand from docs/segments.md, as of 2024-03-31.
HAND = {
    # bytes: 'Bor' < 'Kazan' < 'Kz' < 'Moscow' < 'Omsk' < 'amur' (a linguistic order puts amur first)
    "text_lt": dict.fromkeys(["b_feb29", "c_bor", "c_kz"]),
    # bytes: 'bronze' <= 'gold' <= 'gold'; 'silver' is after
    "text_between": dict.fromkeys(["b_dec02", "b_feb29", "b_mar01", "c_bor", "c_moscow"]),
    # (12-02…01-03 ∪ vip) ∩ consented − complained = ({dec02, dec31, jan03} ∪ {dec02, dec31, mar01}) ∩
    # {dec02, dec31, feb29, bor, kz, moscow} − {moscow}; INTERSECT binding first would keep b_jan03
    "set_ops": dict.fromkeys(["b_dec02", "b_dec31"]),
    # consented − vip = {feb29, bor, kz, moscow}, with 3+ orders: not kz (1)
    "set_ops_rules": dict.fromkeys(["b_feb29", "c_bor", "c_moscow"]),
    # first listed segment that holds them; numbers: 20000+ and 2–10 orders = {dec02, feb29, moscow}
    "offers": {
        "b_dec02": "bday_wrap",
        "b_dec31": "bday_wrap",
        "b_jan03": "bday_wrap",
        "b_mar01": "vip",
        "b_feb29": "numbers",
        "c_moscow": "numbers",
    },
    "offers_omsk": {"b_dec02": "vip", "b_dec31": "vip"},
    # md5 buckets worked out in tests/test_segments_cases.py: b_jan03 0.697, b_dec31 44.111, b_dec02 99.303
    "xmas_control": {"b_jan03": "control", "b_dec31": "treatment", "b_dec02": "treatment"},
    "xmas_abc": {"b_jan03": "a", "b_dec31": "b", "b_dec02": "c"},
    # the value as DuckDB writes it: a timestamp with its fraction, an empty one without
    "by_registered": {
        "b_dec02": "2020-01-01 00:00:00",
        "b_dec31": "2024-03-20 08:00:00.5",
        "b_jan03": "2024-01-01 23:30:00",
        "b_feb29": "2019-05-05 05:05:05",
        "b_mar01": "2023-12-31 23:59:59",
        "c_bor": "2022-06-06 12:00:00",
        "c_kz": "2021-01-01 00:00:00",
        "c_moscow": "2018-01-01 00:00:00",
        "c_none": "none",
    },
    "by_amount": {
        "b_dec02": "25000.00",
        "b_dec31": "100.50",
        "b_jan03": "0.00",
        "b_feb29": "20000.00",
        "b_mar01": "999.99",
        "c_bor": "50000.00",
        "c_kz": "300.00",
        "c_moscow": "30000.00",
        "c_none": "0.00",
    },
}


@pytest.fixture(scope="module")
def segments(duck, tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain_segments") / "segments"
    folder.mkdir()
    (folder / "s.yaml").write_text(SEGMENTS)
    return load_segments([folder], load_catalogue(duck), root=folder.parent)


@pytest.fixture(scope="module")
def catalogue(duck):
    return load_catalogue(duck)


def column_types(path: Path) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'marts' AND table_name = 'customer_features'"
            ).fetchall()
        )


def explain(key, segments, catalogue, as_of, dialect, duck) -> str:
    return explain_sql(key, segments, catalogue, as_of, dialect=dialect, column_types=column_types(duck))


def as_members(rows) -> dict[str, str | None]:
    out = {}
    for row in rows:
        assert row[0] not in out, f"customer {row[0]} twice"
        out[row[0]] = row[1] if len(row) > 1 else None
    return out


def duckdb_members(duck: Path, query: str, spark_conv: bool = False) -> dict[str, str | None]:
    with duckdb.connect(str(duck), read_only=True) as con:
        if spark_conv:  # Spark's conv(text, from_base, to_base) for what the split hash asks of it
            con.execute("SET TimeZone = 'UTC'")
            con.create_function(
                "conv",
                lambda s, f, t: str(int(s, f)) if t == 10 else None,
                ["VARCHAR", "INTEGER", "INTEGER"],
                "VARCHAR",
            )
        return as_members(con.execute(query).fetchall())


def engine_members(duck: Path, segments, key: str, as_of: date) -> dict[str, str | None]:
    with duckdb.connect(str(duck), read_only=True) as con:
        result = evaluate(con, segments, as_of, keys=[key])
        seg = segments[key]
        arms = result.arms(key) if seg.arms or seg.split is not None else {}
        return {c: arms.get(c) for c in result.members(key)}


KEYS = [doc["key"] for doc in yaml.safe_load_all(SEGMENTS)]
PORTABLE = [k for k in KEYS if k not in REFUSED]


# --- DuckDB and PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", AS_OFS, ids=str)
@pytest.mark.parametrize("key", PORTABLE)
def test_postgres_selects_what_duckdb_and_the_engine_select(duck, pg, segments, catalogue, key, as_of) -> None:
    dsn, _ = pg
    engine = engine_members(duck, segments, key, as_of)
    in_duckdb = duckdb_members(duck, explain(key, segments, catalogue, as_of, "duckdb", duck))
    pg_sql = explain(key, segments, catalogue, as_of, "postgres", duck)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET DateStyle = 'SQL, DMY'")  # a server that writes dates as 31/03/2024 by default
        in_postgres = as_members(conn.execute(pg_sql).fetchall())
    assert in_duckdb == engine, f"DuckDB SQL vs engine for {key}"
    assert in_postgres == in_duckdb, f"{key} as of {as_of} on PostgreSQL:\n{pg_sql}"
    if as_of == MAR and key in HAND:
        assert in_postgres == HAND[key]


def test_the_data_exercises_the_segments(duck, segments, catalogue) -> None:
    """Each segment selects somebody on one of the dates, and not everybody on both (or the comparison is idle)."""
    for key in PORTABLE:
        sizes = [
            len(duckdb_members(duck, explain(key, segments, catalogue, as_of, "duckdb", duck))) for as_of in AS_OFS
        ]
        assert max(sizes) > 0, key
        if not key.startswith("by_") and key != "thirds":
            assert min(sizes) < len(EVERYONE), key


def test_the_text_columns_of_the_server_sort_linguistically(pg) -> None:
    """The byte-order expectation of text_lt is not the server's own order: COLLATE "C" made the difference."""
    dsn, collation = pg
    if collation is None:
        pytest.skip("the server has no ICU collation; its database is in the C locale")
    with psycopg.connect(dsn) as conn:
        plain = conn.execute("SELECT customer_id FROM marts.customer_features WHERE city < 'Kz' ORDER BY 1").fetchall()
    assert {r[0] for r in plain} == set(HAND["text_lt"]) | {"b_mar01"}


@pytest.mark.parametrize("dialect", ["postgres", "spark"])
def test_a_double_split_is_refused_naming_the_segment_and_the_field(segments, catalogue, duck, dialect) -> None:
    with pytest.raises(CompileError, match=r"segment 'by_score' .*split\.by_field custom_score is a DOUBLE"):
        explain("by_score", segments, catalogue, MAR, dialect, duck)
    explain("built_on_a_double_split", segments, catalogue, MAR, dialect, duck)  # by_score's arms play no part
    # without the DuckDB file's types, a custom number column could be a DOUBLE: refused too
    with pytest.raises(CompileError, match=r"segment 'by_visits' .*custom_visits: its type is not known"):
        explain_sql("by_visits", segments, catalogue, MAR, dialect=dialect)
    assert explain_sql("by_score", segments, catalogue, MAR, dialect="duckdb")


def test_other_dialects_are_refused(segments, catalogue) -> None:
    with pytest.raises(CompileError, match=r"dialect 'snowflake' is not supported: choose one of duckdb, postgres"):
        explain_sql("offers", segments, catalogue, MAR, dialect="snowflake")


def test_the_command_exits_1_with_the_reason(duck, segments, monkeypatch, capsys, tmp_path) -> None:
    folder = tmp_path / "segments"
    folder.mkdir()
    (folder / "s.yaml").write_text(SEGMENTS)
    monkeypatch.setenv("ACRM_DUCKDB_PATH", str(duck))
    monkeypatch.setenv("ACRM_SEGMENTS_DIR", str(folder))
    assert main(["explain", "by_score", "--as-of", str(MAR), "--dialect", "postgres"]) == 1
    err = capsys.readouterr().err
    assert "acrm explain: segment 'by_score' cannot be explained for postgres: split.by_field custom_score" in err
    assert main(["explain", "by_visits", "--as-of", str(MAR), "--dialect", "postgres"]) == 0
    out = capsys.readouterr().out
    assert 'CAST("w"."custom_visits" AS VARCHAR)' in out
    assert main(["explain", "offers", "--as-of", str(MAR), "--dialect", "mysql"]) == 1
    assert "dialect 'mysql' is not supported" in capsys.readouterr().err


# --- Spark --------------------------------------------------------------------------------------------------


def spark_problems(tree: exp.Expression) -> list[str]:
    """Constructs Spark SQL does not have or does not allow where they stand."""
    problems = []
    for node in tree.walk():
        if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.UBIGINT, exp.DataType.Type.BIT):
            problems.append(f"type {node.sql('spark')}")
        if isinstance(node, exp.Filter):
            problems.append(f"FILTER clause: {node.sql('spark')[:60]}")
        subquery = isinstance(node, exp.Exists) or (isinstance(node, exp.In) and node.args.get("query"))
        if subquery and not isinstance(node.find_ancestor(exp.Where, exp.Select), exp.Where):
            problems.append(f"predicate subquery outside WHERE: {node.sql('spark')[:60]}")
    return problems


@pytest.mark.parametrize("as_of", AS_OFS, ids=str)
@pytest.mark.parametrize("key", PORTABLE)
def test_spark_sql_parses_and_means_what_duckdb_means(duck, segments, catalogue, key, as_of) -> None:
    spark_sql = explain(key, segments, catalogue, as_of, "spark", duck)
    tree = sqlglot.parse_one(spark_sql, read="spark")
    assert tree.sql("spark", pretty=True) == spark_sql
    assert '"' not in spark_sql.replace("'\"'", "")  # identifiers in backticks, no ANSI quotes
    assert spark_problems(tree) == []
    as_duckdb = tree.sql("duckdb")
    want = duckdb_members(duck, explain(key, segments, catalogue, as_of, "duckdb", duck))
    assert duckdb_members(duck, as_duckdb, spark_conv=True) == want, as_duckdb
