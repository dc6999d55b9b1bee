"""The input contract as data: tables, columns, types and the checks that quarantine a row.

docs/input-contract.md is the prose version of this module; keep the two in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "id",  # non-empty text key or reference, kept as text
    "text",  # trimmed text
    "lower",  # trimmed, lower-cased text
    "timestamp",
    "date",
    "amount",  # DECIMAL(18,2), must be >= 0
    "points",  # signed DECIMAL(18,2)
    "quantity",  # integer >= 0, empty = 1
    "boolean",
    "status",  # completed | cancelled | returned, empty = completed
    "tags",  # ';'-separated list
]

# The only custom column names loaded: they reach SQL in dbt and the segments (the dbt macro custom_columns
# checks the same pattern). Header names are untrusted text.
CUSTOM_NAME = re.compile(r"custom_[a-z0-9_]{1,57}", re.ASCII)
BAD_CUSTOM_NAME = "invalid column name: use custom_ followed by a-z, 0-9 and _"
STATUSES = ("completed", "cancelled", "returned")
TRUE_WORDS = ("true", "1", "yes", "y", "t")
FALSE_WORDS = ("false", "0", "no", "n", "f")


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = "text"
    required: bool = False  # the file must have this column
    must_parse: bool = False  # an empty value is a bad row too (the row can't be placed in time or valued)


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    required_table: bool = False
    unique_key: str | None = None
    # (column, parent table, parent column): a reference that must point at a loaded row.
    parents: tuple[tuple[str, str, str], ...] = ()
    keep_custom: bool = False  # keep `custom_*` columns (customers)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _c(name: str, kind: Kind = "text", required: bool = False, must_parse: bool = False) -> Column:
    return Column(name, kind, required, must_parse)


CUSTOMERS = TableSpec(
    "customers",
    (
        _c("customer_id", "id", required=True),
        _c("first_name"),
        _c("last_name"),
        _c("gender", "lower"),
        _c("birth_date", "date"),
        _c("email", "lower"),
        _c("phone"),
        _c("city"),
        _c("region"),
        _c("country"),
        _c("registered_at", "timestamp"),
        _c("tags", "tags"),
        _c("consent_email", "boolean"),
        _c("consent_sms", "boolean"),
        _c("consent_push", "boolean"),
    ),
    required_table=True,
    unique_key="customer_id",
    keep_custom=True,
)

PRODUCTS = TableSpec(
    "products",
    (_c("product_id", "id", required=True), _c("name"), _c("category"), _c("brand")),
    unique_key="product_id",
)

ORDERS = TableSpec(
    "orders",
    (
        _c("order_id", "id", required=True),
        _c("customer_id", "id", required=True),
        _c("ordered_at", "timestamp", required=True, must_parse=True),
        _c("total_amount", "amount", required=True, must_parse=True),
        _c("status", "status"),
        _c("store_id"),
        _c("channel", "lower"),
    ),
    required_table=True,
    unique_key="order_id",
    parents=(("customer_id", "customers", "customer_id"),),
)

ORDER_LINES = TableSpec(
    "order_lines",
    (
        _c("order_id", "id", required=True),
        _c("product_id", "id", required=True),
        _c("quantity", "quantity"),
        _c("price", "amount"),
    ),
    parents=(("order_id", "orders", "order_id"), ("product_id", "products", "product_id")),
)

EVENTS = TableSpec(
    "events",
    (
        _c("customer_id", "id", required=True),
        _c("occurred_at", "timestamp", required=True, must_parse=True),
        _c("event_type", "lower", required=True),
        _c("channel", "lower"),
        _c("properties"),
    ),
    parents=(("customer_id", "customers", "customer_id"),),
)

MESSAGES = TableSpec(
    "messages",
    (
        _c("message_id"),
        _c("customer_id", "id", required=True),
        _c("campaign_id"),
        _c("channel", "lower", required=True),
        _c("sent_at", "timestamp", required=True, must_parse=True),
        _c("delivered_at", "timestamp"),
        _c("opened_at", "timestamp"),
        _c("clicked_at", "timestamp"),
        _c("complained_at", "timestamp"),
        _c("unsubscribed_at", "timestamp"),
    ),
    unique_key="message_id",
    parents=(("customer_id", "customers", "customer_id"),),
)

BONUS_TRANSACTIONS = TableSpec(
    "bonus_transactions",
    (
        _c("customer_id", "id", required=True),
        _c("occurred_at", "timestamp", required=True, must_parse=True),
        _c("points", "points", required=True, must_parse=True),
        _c("reason"),
    ),
    parents=(("customer_id", "customers", "customer_id"),),
)

# Load order: parents before the tables that reference them.
TABLES: tuple[TableSpec, ...] = (
    CUSTOMERS,
    PRODUCTS,
    ORDERS,
    ORDER_LINES,
    EVENTS,
    MESSAGES,
    BONUS_TRANSACTIONS,
)
TABLES_BY_NAME = {t.name: t for t in TABLES}
