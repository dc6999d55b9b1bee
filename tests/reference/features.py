"""An independent, plain-pandas reference for `marts.customer_features`, written from docs/features.md.

It reads nothing but the raw tables the loader wrote (``read_raw``) and computes every feature in
pandas/python, so that a test can compare it column by column with what dbt builds. Money is summed in
whole cents (the raw amounts are DECIMAL(18,2)) so that totals, ties and RFM ranks are exact.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

RAW_TABLES = ("customers", "orders", "order_lines", "products", "events", "messages", "bonus_transactions")

# Column → kind, in the order of docs/features.md. Kinds drive the comparison in the tests.
COLUMN_KINDS: dict[str, str] = {
    "customer_id": "text",
    "as_of": "date",
    "first_name": "text",
    "last_name": "text",
    "city": "text",
    "region": "text",
    "country": "text",
    "gender": "text",
    "birth_date": "date",
    "age": "int",
    "email": "text",
    "phone": "text",
    "phone_region": "text",
    "timezone": "text",
    "registered_at": "timestamp",
    "tenure_days": "int",
    "tags": "list",
    "consent_email": "bool",
    "consent_sms": "bool",
    "consent_push": "bool",
    # orders
    "orders_count": "int",
    "total_amount": "decimal",
    "avg_order_value": "decimal",
    "first_order_date": "date",
    "last_order_date": "date",
    "recency_days": "int",
    "cancelled_count": "int",
    "returned_count": "int",
    "orders_30d": "int",
    "amount_30d": "decimal",
    "orders_365d": "int",
    "amount_365d": "decimal",
    "favourite_category": "text",
    "favourite_brand": "text",
    "favourite_store": "text",
    # RFM
    "rfm_r": "int",
    "rfm_f": "int",
    "rfm_m": "int",
    "rfm_score": "text",
    "rfm_segment": "text",
    # bonus
    "bonus_balance": "decimal",
    "bonus_earned_365d": "decimal",
    # messages
    "emails_sent_30d": "int",
    "emails_sent_90d": "int",
    "emails_opened_30d": "int",
    "emails_opened_90d": "int",
    "emails_clicked_30d": "int",
    "emails_clicked_90d": "int",
    "messages_sent_30d": "int",
    "last_email_open_at": "timestamp",
    "last_email_click_at": "timestamp",
    "unsubscribed_email": "bool",
    "unsubscribed_sms": "bool",
    "unsubscribed_push": "bool",
    "unsubscribed": "bool",
    "complained": "bool",
    # site and app
    "last_visit_at": "timestamp",
    "visits_30d": "int",
    "product_views_30d": "int",
    "cart_adds_30d": "int",
    "last_event_at": "timestamp",
}

VISIT_TYPES = ("site_visit", "app_open")


def read_raw(db_path: str | Path) -> dict[str, pd.DataFrame]:
    """`SELECT * FROM raw.<table>` for every contract table, as pandas frames."""
    with duckdb.connect(str(db_path), read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM raw.{t}").df() for t in RAW_TABLES}


# --- small helpers --------------------------------------------------------------------------------


def _ts(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).astype("datetime64[us]")


def _obj(s: pd.Series) -> pd.Series:
    """Text as python objects, missing values as None."""
    return s.astype(object).where(s.notna(), None)


def _cents(s: pd.Series) -> pd.Series:
    """A DECIMAL(18,2) column (read as float) as exact integer cents; missing stays missing."""
    return s.astype("Float64").mul(100).round().astype("Int64")


def _money(cents: pd.Series) -> pd.Series:
    return cents.astype("Float64") / 100


def _clean_tags(value) -> list[str] | None:
    if value is None or (not isinstance(value, list | tuple | np.ndarray) and pd.isna(value)):
        return None
    if isinstance(value, str):
        value = value.split(";")
    return [t.strip() for t in value if t is not None and t.strip() != ""]


def _age(birth: pd.Timestamp, day: datetime.date) -> int | None:
    """Full years on `day`; a 29 Feb birthday has not come yet on 28 Feb of a common year (it counts on 1 Mar)."""
    if pd.isna(birth):
        return None
    return day.year - birth.year - (1 if (day.month, day.day) < (birth.month, birth.day) else 0)


def _top(frame: pd.DataFrame, key: str, weight: str) -> pd.Series:
    """Per customer, the `key` value with the largest summed `weight`; ties → alphabetically first key."""
    frame = frame[frame[key].notna()]
    if frame.empty:
        return pd.Series(dtype=object)
    totals = frame.groupby(["customer_id", key])[weight].sum().reset_index()
    totals[weight] = totals[weight].astype("int64")
    totals = totals.sort_values(["customer_id", weight, key], ascending=[True, False, True], kind="mergesort")
    first = totals.drop_duplicates("customer_id", keep="first")
    return pd.Series(first[key].astype(object).to_numpy(), index=first["customer_id"].to_numpy())


def _quintile(values: pd.Series, lower_is_better: bool) -> pd.Series:
    """ceil(5 × k / n), k = scored customers whose value is no better than this one (ties share)."""
    n = len(values)
    if n == 0:
        return pd.Series(dtype="Int64")
    v = values.to_numpy(dtype="int64")
    if lower_is_better:  # so that "no better" is always "<= mine"
        v = -v
    k = np.searchsorted(np.sort(v), v, side="right")
    return pd.Series([(5 * int(x) + n - 1) // n for x in k], index=values.index, dtype="Int64")


def _segment(r: int, f: int) -> str:
    if r >= 4 and f >= 4:
        return "champions"
    if r >= 3 and f >= 3:
        return "loyal"
    if r >= 4 and f == 1:
        return "new_customers"
    if r >= 4:
        return "promising"
    if r == 3:
        return "need_attention"
    if r <= 2 and f >= 3:
        return "at_risk"
    if r == 2:
        return "hibernating"
    return "lost"


# --- the features ---------------------------------------------------------------------------------


def reference_features(raw: dict[str, pd.DataFrame], as_of: datetime.date) -> pd.DataFrame:
    """One row per customer existing on `as_of`, with every column of docs/features.md (+ custom_*)."""
    day = pd.Timestamp(as_of)
    cutoff = day + pd.Timedelta(days=1)

    def before(ts: pd.Series) -> pd.Series:
        return ts.notna() & (ts < cutoff)

    def within(ts: pd.Series, days: int) -> pd.Series:
        return ts.notna() & (ts >= cutoff - pd.Timedelta(days=days)) & (ts < cutoff)

    # --- profile: customers registered by the cutoff (or never) -------------------------------------
    customers = raw["customers"].copy()
    registered = _ts(customers["registered_at"])
    customers = customers[registered.isna() | (registered < cutoff)].reset_index(drop=True)
    registered = _ts(customers["registered_at"])
    ids = pd.Index(customers["customer_id"].astype(object), name="customer_id")

    out = pd.DataFrame(index=ids)
    out["customer_id"] = list(ids)
    out["as_of"] = pd.Series(day, index=ids).astype("datetime64[us]")
    for col in ("first_name", "last_name", "city", "region", "country"):
        out[col] = _obj(customers[col]).to_numpy()
    out["gender"] = _obj(customers["gender"].str.lower()).to_numpy()
    birth = _ts(customers["birth_date"]).dt.normalize()
    out["birth_date"] = birth.to_numpy()
    out["age"] = pd.array([_age(b, as_of) for b in birth], dtype="Int64")
    out["email"] = _obj(customers["email"].str.strip().str.lower()).to_numpy()
    out["phone"] = _obj(customers["phone_e164"]).to_numpy()
    out["phone_region"] = _obj(customers["phone_region"]).to_numpy()
    out["timezone"] = _obj(customers["phone_timezone"]).to_numpy()
    out["registered_at"] = registered.to_numpy()
    tenure = (day - registered.dt.normalize()).dt.days
    out["tenure_days"] = pd.array(tenure.astype("Int64"), dtype="Int64")
    out["tags"] = [_clean_tags(t) for t in customers["tags"]]
    for col in ("consent_email", "consent_sms", "consent_push"):
        out[col] = pd.array(customers[col].astype("boolean"), dtype="boolean")

    # --- orders ------------------------------------------------------------------------------------
    orders = raw["orders"].copy()
    orders["ordered_at"] = _ts(orders["ordered_at"])
    orders["cents"] = _cents(orders["total_amount"])
    orders = orders[before(orders["ordered_at"])]
    completed = orders[orders["status"] == "completed"]
    by_customer = completed.groupby("customer_id")

    def count(frame: pd.DataFrame) -> pd.Series:
        return frame.groupby("customer_id").size().reindex(ids, fill_value=0).astype("int64")

    def cents_sum(frame: pd.DataFrame, col: str = "cents") -> pd.Series:
        return frame.groupby("customer_id")[col].sum().reindex(ids).fillna(0).astype("int64")

    orders_count = count(completed)
    total_cents = cents_sum(completed)
    out["orders_count"] = orders_count
    out["total_amount"] = _money(total_cents)
    avg = total_cents.astype("float64") / orders_count.replace(0, np.nan) / 100
    out["avg_order_value"] = avg.astype("Float64")
    first_order = by_customer["ordered_at"].min().dt.normalize().reindex(ids)
    last_order = by_customer["ordered_at"].max().dt.normalize().reindex(ids)
    out["first_order_date"] = first_order.astype("datetime64[us]")
    out["last_order_date"] = last_order.astype("datetime64[us]")
    recency = (day - last_order).dt.days.astype("Int64")
    out["recency_days"] = recency
    out["cancelled_count"] = count(orders[orders["status"] == "cancelled"])
    out["returned_count"] = count(orders[orders["status"] == "returned"])
    for days in (30, 365):
        recent = completed[within(completed["ordered_at"], days)]
        out[f"orders_{days}d"] = count(recent)
        out[f"amount_{days}d"] = _money(cents_sum(recent))

    # favourites: lines of completed orders before the cutoff, valued quantity × price
    lines = raw["order_lines"].merge(completed[["order_id", "customer_id"]], on="order_id", how="inner")
    products = raw["products"][["product_id", "category", "brand"]]
    lines = lines.merge(products, on="product_id", how="left")
    lines["line_cents"] = (lines["quantity"].astype("Int64") * _cents(lines["price"])).astype("Int64")
    lines["line_cents"] = lines["line_cents"].fillna(0)
    out["favourite_category"] = _top(lines, "category", "line_cents").reindex(ids).astype(object)
    out["favourite_brand"] = _top(lines, "brand", "line_cents").reindex(ids).astype(object)
    stores = completed.assign(one=1)
    out["favourite_store"] = _top(stores, "store_id", "one").reindex(ids).astype(object)
    for col in ("favourite_category", "favourite_brand", "favourite_store"):
        out[col] = _obj(out[col])

    # --- RFM over the existing customers with a completed order ------------------------------------
    scored = orders_count > 0
    r = _quintile(recency[scored], lower_is_better=True)
    f = _quintile(orders_count[scored], lower_is_better=False)
    m = _quintile(total_cents[scored], lower_is_better=False)
    out["rfm_r"] = r.reindex(ids).astype("Int64")
    out["rfm_f"] = f.reindex(ids).astype("Int64")
    out["rfm_m"] = m.reindex(ids).astype("Int64")
    score = pd.Series(None, index=ids, dtype=object)
    segment = pd.Series("no_purchases", index=ids, dtype=object)
    for cid in r.index:
        score[cid] = f"{r[cid]}{f[cid]}{m[cid]}"
        segment[cid] = _segment(int(r[cid]), int(f[cid]))
    out["rfm_score"] = score
    out["rfm_segment"] = segment

    # --- bonus -------------------------------------------------------------------------------------
    bonus = raw["bonus_transactions"].copy()
    bonus["occurred_at"] = _ts(bonus["occurred_at"])
    bonus["cents"] = _cents(bonus["points"])
    bonus = bonus[before(bonus["occurred_at"])]
    out["bonus_balance"] = _money(cents_sum(bonus))
    earned = bonus[within(bonus["occurred_at"], 365) & (bonus["cents"] > 0)]
    out["bonus_earned_365d"] = _money(cents_sum(earned))

    # --- messages: every engagement counts by its own timestamp ------------------------------------
    messages = raw["messages"].copy()
    for col in ("sent_at", "opened_at", "clicked_at", "complained_at", "unsubscribed_at"):
        messages[col] = _ts(messages[col])
    email = messages[messages["channel"] == "email"]
    for days in (30, 90):
        out[f"emails_sent_{days}d"] = count(email[within(email["sent_at"], days)])
        out[f"emails_opened_{days}d"] = count(email[within(email["opened_at"], days)])
        out[f"emails_clicked_{days}d"] = count(email[within(email["clicked_at"], days)])
    out["messages_sent_30d"] = count(messages[within(messages["sent_at"], 30)])

    def latest(frame: pd.DataFrame, col: str) -> pd.Series:
        frame = frame[before(frame[col])]
        return frame.groupby("customer_id")[col].max().reindex(ids).astype("datetime64[us]")

    out["last_email_open_at"] = latest(email, "opened_at")
    out["last_email_click_at"] = latest(email, "clicked_at")

    def any_of(frame: pd.DataFrame) -> pd.Series:
        return pd.Series(ids.isin(frame["customer_id"]), index=ids, dtype=bool)

    unsubscribed = messages[before(messages["unsubscribed_at"])]
    for channel in ("email", "sms", "push"):
        out[f"unsubscribed_{channel}"] = any_of(unsubscribed[unsubscribed["channel"] == channel])
    out["unsubscribed"] = any_of(unsubscribed)
    out["complained"] = any_of(messages[before(messages["complained_at"])])

    # --- site and app activity ---------------------------------------------------------------------
    events = raw["events"].copy()
    events["occurred_at"] = _ts(events["occurred_at"])
    events = events[before(events["occurred_at"])]
    visits = events[events["event_type"].isin(VISIT_TYPES)]
    out["last_visit_at"] = latest(visits, "occurred_at")
    out["visits_30d"] = count(visits[within(visits["occurred_at"], 30)])
    out["product_views_30d"] = count(
        events[within(events["occurred_at"], 30) & (events["event_type"] == "product_view")]
    )
    out["cart_adds_30d"] = count(events[within(events["occurred_at"], 30) & (events["event_type"] == "cart_add")])
    out["last_event_at"] = latest(events, "occurred_at")

    # --- custom_* columns, as loaded -----------------------------------------------------------------
    for col in customers.columns:
        if col.startswith("custom_"):
            out[col] = customers[col].to_numpy()

    out = out[list(COLUMN_KINDS) + custom_columns(out)]
    return out.reset_index(drop=True).sort_values("customer_id", kind="mergesort").reset_index(drop=True)


def custom_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("custom_")]
