"""Random segment definitions over the demo data, for the differential tests (the engine against the pandas
reference in tests/test_segments_differential.py; DuckDB against Spark in tests/test_engine_spark.py).

Hypothesis writes rule trees up to depth 3 over real features of every type, with every operator,
relative / absolute / year-less dates and behaviour conditions over the four sources with every metric
and window unit, plus set operations, priority lists and splits built on them. Values are drawn from the
data (`value_pools`) so that memberships are neither empty nor everyone.
"""

from __future__ import annotations

import random
from datetime import date

import pandas as pd
from hypothesis import strategies as st

NUMBERS = [
    "total_amount",
    "orders_count",
    "recency_days",
    "age",
    "avg_order_value",
    "tenure_days",
    "bonus_balance",
    "amount_365d",
    "visits_30d",
    "rfm_r",
    "custom_referral_score",
]
TEXTS = ["city", "gender", "favourite_category", "favourite_brand", "rfm_segment", "custom_loyalty_tier", "email"]
DATES = ["birth_date", "last_order_date", "first_order_date"]
TIMESTAMPS = ["registered_at", "last_visit_at", "last_email_open_at", "last_event_at"]
BOOLEANS = ["consent_email", "consent_sms", "unsubscribed", "complained", "custom_pet_owner"]
LISTS = ["tags"]
COMPARE = ["=", "!=", "<", "<=", ">", ">="]
# docs/segments.md, "Field operators"
OPS = {
    "number": [*COMPARE, "between", "in", "not_in", "is_null", "is_not_null"],
    "text": [*COMPARE, "between", "in", "not_in", "is_null", "is_not_null", "contains"],
    "date": [*COMPARE, "between", "in", "not_in", "is_null", "is_not_null"],
    "timestamp": [*COMPARE, "between", "is_null", "is_not_null"],
    "boolean": ["=", "!=", "is_null", "is_not_null"],
    "list": ["has_tag", "contains", "is_null", "is_not_null"],
}
METRICS = {
    "purchase": ["count", "distinct_days", "sum_amount", "sum_quantity", "distinct_products", "distinct_categories"],
    "event": ["count", "distinct_days"],
    "message": ["count", "distinct_days", "distinct_campaigns"],
    "bonus": ["count", "distinct_days", "sum_points"],
}
WINDOW_N = {"h": (1, 4000), "d": (1, 900), "w": (1, 120), "M": (1, 40), "y": (1, 5)}
RELATIVE_N = {"d": (0, 3000), "w": (0, 400), "M": (0, 90), "y": (0, 8)}
# The engine refuses `store_id` / `channel` together with product filters or line metrics (see the
# report and tests/test_segments_cases.py::…two_categories…); leave that combination out here so that
# the other differences stay visible. Set to True to generate it.
STORE_CHANNEL_WITH_LINES = True


def _distinct(series: pd.Series, limit: int = 60) -> list:
    values = sorted({v for v in series.dropna().tolist()}, key=str)
    if len(values) > limit:
        values = random.Random(len(values)).sample(values, limit)
    return values


class Pools(dict):
    """Value pools with a short repr (hypothesis prints strategy arguments)."""

    def __repr__(self) -> str:
        return "pools"


def value_pools(frames: dict[str, pd.DataFrame], as_of: date) -> Pools:
    """Values that occur in the data, per feature and per behaviour filter / threshold."""
    features = frames["marts.customer_features"]
    pools = Pools()
    pools["as_of_md"] = [as_of.strftime("%m-%d")]
    for name in NUMBERS:
        pools[name] = [int(v) if float(v).is_integer() else round(float(v), 2) for v in _distinct(features[name])]
    for name in TEXTS:
        pools[name] = [str(v) for v in _distinct(features[name])]
    for name in [*DATES, *TIMESTAMPS]:
        pools[name] = [pd.Timestamp(v).date().isoformat() for v in _distinct(features[name], 200)]
    tags = sorted({t for v in features["tags"].dropna() for t in v})
    pools["tags"] = [str(t) for t in tags]
    orders, lines = frames["marts.fct_orders"], frames["marts.fct_order_lines"]
    events, messages = frames["marts.fct_events"], frames["marts.fct_messages"]
    bonus = frames["marts.fct_bonus_transactions"]
    pools["category"] = [str(v) for v in _distinct(lines["category"])]
    pools["brand"] = [str(v) for v in _distinct(lines["brand"])]
    pools["product_id"] = [str(v) for v in _distinct(lines["product_id"], 40)]
    pools["store_id"] = [str(v) for v in _distinct(orders["store_id"])]
    pools["order_channel"] = [str(v) for v in _distinct(orders["channel"])]
    pools["event_type"] = [str(v) for v in _distinct(events["event_type"])]
    pools["event_channel"] = [str(v) for v in _distinct(events["channel"])]
    pools["message_channel"] = [str(v) for v in _distinct(messages["channel"])]
    pools["campaign_id"] = [str(v) for v in _distinct(messages["campaign_id"])]
    pools["reason"] = [str(v) for v in _distinct(bonus["reason"])]
    pools["order_total"] = [round(float(v), 2) for v in _distinct(orders["total_amount"], 100)]
    pools["points"] = [round(float(v), 2) for v in _distinct(bonus["points"], 100)]
    return pools


# --- strategies --------------------------------------------------------------------------------------


@st.composite
def relative_date(draw) -> str:
    unit = draw(st.sampled_from(["today", "d", "w", "M", "y"]))
    if unit == "today":
        return "today"
    low, high = RELATIVE_N[unit]
    n = draw(st.integers(low, high))
    sign = draw(st.sampled_from(["-", "-", "-", "+"]))
    return f"{sign}{n}{unit}"


@st.composite
def date_value(draw, pool: list[str]) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(pool))
    return draw(relative_date())


@st.composite
def month_day(draw, pools: dict[str, list]) -> str:
    """MM-DD (29 Feb left out: whether an `02-29` value moves to 1 Mar is not said) or a relative date."""
    if draw(st.integers(0, 2)) == 0:
        return draw(relative_date())
    special = draw(st.sampled_from([None, "02-28", "03-01", "03-01", "12-31", "01-01", *pools["as_of_md"]]))
    if special:
        return special
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]))
    return f"{month:02d}-{day:02d}"


@st.composite
def field_condition(draw, pools: dict[str, list]) -> dict:
    kind = draw(st.sampled_from(["number", "text", "date", "timestamp", "boolean", "list"]))
    name = draw(
        st.sampled_from(
            {
                "number": NUMBERS,
                "text": TEXTS,
                "date": DATES,
                "timestamp": TIMESTAMPS,
                "boolean": BOOLEANS,
                "list": LISTS,
            }[kind]
        )
    )
    if kind in ("date", "timestamp") and draw(st.integers(0, 3)) == 0:
        name = "birth_date" if draw(st.booleans()) else name
        if draw(st.booleans()):
            return {"field": name, "op": "=", "value": draw(month_day(pools)), "ignore_year": True}
        low, high = draw(month_day(pools)), draw(month_day(pools))
        return {"field": name, "op": "between", "value": [low, high], "ignore_year": True}
    op = draw(st.sampled_from(OPS[kind]))
    if op in ("is_null", "is_not_null"):
        return {"field": name, "op": op}
    pool = pools.get(name, [])
    if kind == "number":
        low, high = min(pool), max(pool)
        one = st.one_of(
            st.sampled_from(pool),
            st.integers(int(low), int(high) + 1),
            st.sampled_from(pool).map(lambda v: round(v + 0.5, 2)),  # between two integers
        )
    elif kind == "text":
        if op == "contains":
            word = draw(st.sampled_from(pool))
            start = draw(st.integers(0, max(len(word) - 1, 0)))
            return {"field": name, "op": op, "value": word[start : start + draw(st.integers(1, 4))] or "x"}
        one = st.one_of(st.sampled_from(pool), st.sampled_from(["Nowhere", "", "zzz", "A"]))
    elif kind in ("date", "timestamp"):
        one = date_value(pool)
    elif kind == "boolean":
        one = st.booleans()
    else:
        return {"field": name, "op": op, "value": draw(st.sampled_from([*pool, "nope"]))}
    if op == "between":
        return {"field": name, "op": op, "value": [draw(one), draw(one)]}
    if op in ("in", "not_in"):
        return {"field": name, "op": op, "value": draw(st.lists(one, min_size=1, max_size=4))}
    return {"field": name, "op": op, "value": draw(one)}


def _some(draw, pool: list[str], max_size: int = 3) -> list[str] | str:
    picked = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=max_size, unique=True))
    return picked[0] if len(picked) == 1 and draw(st.booleans()) else picked


@st.composite
def behaviour_condition(draw, pools: dict[str, list]) -> dict:
    source = draw(st.sampled_from(["purchase", "event", "message", "bonus"]))
    metric = draw(st.sampled_from(METRICS[source]))
    unit = draw(st.sampled_from(list(WINDOW_N)))
    n = draw(st.integers(*WINDOW_N[unit]))
    cond: dict = {}
    if source == "purchase":
        flt: dict = {}
        for key in ("category", "brand", "product_id"):
            if draw(st.integers(0, 3)) == 0:
                flt[key] = _some(draw, pools[key])
        lines = bool(flt) or metric in ("sum_quantity", "distinct_products", "distinct_categories")
        if STORE_CHANNEL_WITH_LINES or not lines:
            if draw(st.integers(0, 3)) == 0:
                flt["store_id"] = _some(draw, pools["store_id"], 6)
            if draw(st.integers(0, 3)) == 0:
                flt["channel"] = _some(draw, pools["order_channel"], 2)
        if draw(st.integers(0, 3)) == 0:
            flt["status"] = _some(draw, ["completed", "cancelled", "returned"])
        cond["purchase"] = flt
    elif source == "event":
        if draw(st.booleans()):
            cond["event"] = _some(draw, pools["event_type"])
        else:
            flt = {}
            if draw(st.booleans()):
                flt["type"] = _some(draw, pools["event_type"])
            if draw(st.booleans()):
                flt["channel"] = _some(draw, pools["event_channel"])
            cond["event"] = flt
    elif source == "message":
        flt = {}
        if draw(st.booleans()):
            flt["channel"] = _some(draw, pools["message_channel"])
        if draw(st.integers(0, 3)) == 0:
            flt["campaign_id"] = _some(draw, pools["campaign_id"], 5)
        if draw(st.integers(0, 2)):
            flt["action"] = draw(
                st.sampled_from(["sent", "delivered", "opened", "clicked", "complained", "unsubscribed"])
            )
        cond["message"] = flt
    else:
        flt = {}
        if draw(st.integers(0, 2)) == 0:
            flt["reason"] = _some(draw, pools["reason"])
        if draw(st.booleans()):
            flt["sign"] = draw(st.sampled_from(["any", "accrual", "redemption"]))
        cond["bonus"] = flt
    cond["within"] = f"{n}{unit}"
    if metric == "sum_amount":
        threshold = st.one_of(st.sampled_from(pools["order_total"]), st.sampled_from([0, 100, 500, 1000, 5000, 20000]))
    elif metric == "sum_points":
        threshold = st.one_of(st.sampled_from(pools["points"]), st.integers(-3000, 5000))
    elif metric == "sum_quantity":
        threshold = st.one_of(st.integers(0, 40), st.integers(0, 40).map(lambda v: v + 0.5))
    else:
        threshold = st.one_of(st.integers(0, 8), st.integers(0, 8).map(lambda v: v + 0.5))
    if draw(st.integers(0, 4)) == 0:
        checks = {"=": 0}  # nothing in the window
    else:
        ops = draw(st.lists(st.sampled_from(COMPARE), min_size=1, max_size=2, unique=True))
        checks = {op: draw(threshold) for op in ops}
    cond[metric] = checks
    return cond


def condition(pools: dict[str, list], depth: int = 0) -> st.SearchStrategy[dict]:
    leaf = st.one_of(field_condition(pools), behaviour_condition(pools))
    if depth >= 3:
        return leaf
    child = st.deferred(lambda: condition(pools, depth + 1))
    groups = st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(child, min_size=1, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(child, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, child),
    )
    return st.one_of(leaf, leaf, groups)


@st.composite
def split(draw) -> dict:
    kind = draw(st.sampled_from(["control", "arms", "by_field"]))
    salt = draw(st.sampled_from(["spring-2026", "s", "subject-test", "x:y"]))
    if kind == "control":
        return {"control": draw(st.sampled_from(["10%", "50%", 5, 33.5])), "salt": salt}
    if kind == "arms":
        return {"arms": draw(st.sampled_from([{"a": 50, "b": 30, "c": 20}, {"b": 10, "a": 90}])), "salt": salt}
    by_field = ["favourite_category", "city", "rfm_segment", "gender", "rfm_r", "custom_loyalty_tier"]
    by_field += ["total_amount", "first_order_date", "registered_at", "consent_email", "custom_pet_owner"]
    return {"by_field": draw(st.sampled_from(by_field))}


@st.composite
def segment_set(draw, pools: dict[str, list]) -> list[dict]:
    """A few rule segments, then set operations and priority lists over the earlier ones."""
    out: list[dict] = []
    for i in range(draw(st.integers(2, 5))):
        seg = {"key": f"r{i}", "rules": draw(condition(pools))}
        if draw(st.integers(0, 3)) == 0:
            seg["split"] = draw(split())
        out.append(seg)
    for i in range(draw(st.integers(1, 3))):
        keys = [s["key"] for s in out]
        if draw(st.booleans()):
            src: dict = {}
            if draw(st.integers(0, 3)):
                src["union"] = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))
            if "union" not in src or draw(st.booleans()):
                src["intersect"] = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True))
            if draw(st.booleans()):
                src["minus"] = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True))
            seg = {"key": f"s{i}", "from": src}
            if draw(st.integers(0, 3)) == 0:
                seg["split"] = draw(split())
        else:
            seg = {
                "key": f"p{i}",
                "priority": draw(st.lists(st.sampled_from(keys), min_size=2, max_size=4, unique=True)),
            }
        if draw(st.integers(0, 3)) == 0:
            seg["rules"] = draw(condition(pools, depth=2))
        out.append(seg)
    return out
