"""An independent, plain-pandas reference for the segment language, written from docs/segments.md.

It takes the parsed definitions (the pydantic models of ``acrm_pipelines.segments.spec``) and the marts
read into pandas (``read_marts``), and computes each segment's members with sets of customer ids and
python loops: no SQL, and none of the engine's code (its date arithmetic is re-implemented here on
purpose). A test compares it with the engine on random definitions.

Semantics, each from the doc:
- every field or behaviour condition is true or false; a condition on a null feature is false except
  ``is_null`` (so ``!=`` and ``not_in`` leave nulls out), and ``not`` is the complement;
- date and timestamp features are compared by their date; values are ISO dates or relative to the
  as-of date ``D`` (``today``, ``-90d``, ``+3d``, ``-2w``, ``-3M`` calendar months with the day clipped,
  ``-1y`` = 12 months);
- ``ignore_year`` compares (month, day); a range whose start is after its end wraps over the new year;
  a 29 February date counts as 1 March when the as-of year is not a leap year;
- a window ``within: N<unit>`` holds the times ``start <= t < end``, ``end = D + 1 day`` at 00:00 and
  ``start = end - N`` hours / days / weeks / calendar months (day clipped) / years (12 months);
- metrics per the doc's table, 0 for a customer with nothing in the window;
- ``from``: ``(∪ union) ∩ (∩ intersect) − (∪ minus)``; ``priority``: the first listed segment that
  holds a customer is their arm; ``rules`` beside ``from``/``priority`` filter the base;
- splits: bucket ``int(md5(salt + ":" + id)[0:8], 16) / 2**32 * 100``, arms take consecutive ranges in
  the order written (control first); ``by_field``: the value as text, null → ``"none"``;
- members are always customers of ``marts.customer_features`` for the as-of date.
"""

from __future__ import annotations

import calendar
import hashlib
import math
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from acrm_pipelines.segments.spec import (
    AllGroup,
    AnyGroup,
    BehaviourCondition,
    FieldCondition,
    NotGroup,
    Segment,
)

MARTS = ("customer_features", "fct_orders", "fct_order_lines", "fct_events", "fct_messages", "fct_bonus_transactions")
LINE_METRICS = ("sum_quantity", "distinct_products", "distinct_categories")
MESSAGE_TIME = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
    "complained": "complained_at",
    "unsubscribed": "unsubscribed_at",
}
RELATIVE_RE = re.compile(r"^([+-]?)([0-9]+)([dwMy])$")
MONTH_DAY_RE = re.compile(r"^([0-9]{2})-([0-9]{2})$")


def read_marts(con) -> dict[str, pd.DataFrame]:
    """The six marts as DataFrames keyed ``marts.<name>``; ``attrs["types"]`` keeps the SQL column types."""
    frames: dict[str, pd.DataFrame] = {}
    for name in MARTS:
        df = con.execute(f"SELECT * FROM marts.{name}").df()
        df.attrs["types"] = {row[0]: row[1] for row in con.execute(f"DESCRIBE marts.{name}").fetchall()}
        frames[f"marts.{name}"] = df
    return frames


# --- dates ------------------------------------------------------------------------------------------


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def add_months(day: date, n: int) -> date:
    """`day` moved by n calendar months, the day clipped to the target month's length."""
    index = day.year * 12 + (day.month - 1) + n
    year, month0 = divmod(index, 12)
    month = month0 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def resolve_date(value: Any, as_of: date) -> date:
    """An ISO date or a date relative to the as-of date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if text == "today":
        return as_of
    match = RELATIVE_RE.match(text)
    if match:
        n = int(match.group(2)) * (-1 if match.group(1) == "-" else 1)
        unit = match.group(3)
        if unit == "d":
            return as_of + timedelta(days=n)
        if unit == "w":
            return as_of + timedelta(days=7 * n)
        return add_months(as_of, n if unit == "M" else 12 * n)
    return date.fromisoformat(text)


def month_day_of(day: date, as_of: date) -> tuple[int, int]:
    if (day.month, day.day) == (2, 29) and not is_leap(as_of.year):
        return (3, 1)
    return (day.month, day.day)


def resolve_month_day(value: Any, as_of: date) -> tuple[int, int]:
    """`MM-DD`, or a relative / ISO date whose month and day are used."""
    text = str(value).strip()
    match = MONTH_DAY_RE.match(text)
    if match:
        md = (int(match.group(1)), int(match.group(2)))
        return (3, 1) if md == (2, 29) and not is_leap(as_of.year) else md
    return month_day_of(resolve_date(value, as_of), as_of)


def window_bounds(n: int, unit: str, as_of: date) -> tuple[datetime, datetime]:
    end = datetime(as_of.year, as_of.month, as_of.day) + timedelta(days=1)
    if unit == "h":
        start = end - timedelta(hours=n)
    elif unit == "d":
        start = end - timedelta(days=n)
    elif unit == "w":
        start = end - timedelta(weeks=n)
    elif unit in ("M", "y"):
        start_day = add_months(end.date(), -n if unit == "M" else -12 * n)
        start = datetime(start_day.year, start_day.month, start_day.day)
    else:
        raise ValueError(f"unknown window unit {unit!r}")
    return start, end


def bucket(salt: str, customer_id: str) -> float:
    return int(hashlib.md5(f"{salt}:{customer_id}".encode()).hexdigest()[0:8], 16) / 2**32 * 100


# --- python values out of pandas ---------------------------------------------------------------------


def _py(value: Any) -> Any:
    """A pandas/numpy cell as a plain python value, None for every kind of null."""
    if value is None:
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return [_py(v) for v in value]
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).to_pydatetime()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _kind_of_sql(sql_type: str) -> str:
    t = sql_type.strip().upper()
    if t.endswith("[]"):
        return "list"
    if t == "DATE" or t.startswith("TIMESTAMP"):
        return "date"
    if t.startswith("BOOL"):
        return "boolean"
    if t.startswith(("VARCHAR", "TEXT", "STRING")):
        return "text"
    return "number"


def _kind_of_values(series: pd.Series, values: list[Any]) -> str:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "date"
    if pd.api.types.is_bool_dtype(series.dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series.dtype):
        return "number"
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, list):
        return "list"
    if isinstance(sample, bool):
        return "boolean"
    if isinstance(sample, date):
        return "date"
    if isinstance(sample, int | float):
        return "number"
    return "text"


def _cents(series: pd.Series) -> pd.Series:
    """Money columns (DECIMAL(…,2)) as whole cents, so that sums are exact."""
    return (pd.to_numeric(series, errors="coerce").astype("float64") * 100).round().astype("Int64")


# --- the evaluator -----------------------------------------------------------------------------------


class Reference:
    """Members and arms of every segment of `segments` for one as-of date."""

    def __init__(self, frames: dict[str, pd.DataFrame], segments: dict[str, Segment], as_of: date):
        self.frames = frames
        self.as_of = as_of
        self.segments = segments
        features = frames["marts.customer_features"]
        if "as_of" in features.columns:
            days = pd.to_datetime(features["as_of"]).dt.date
            features = features[days == as_of]
        self.features = features.reset_index(drop=True)
        self.ids: list[str] = [str(c) for c in self.features["customer_id"]]
        self.universe: set[str] = set(self.ids)
        self._columns: dict[str, list[Any]] = {}
        self._facts: dict[str, pd.DataFrame] = {}
        self._results: dict[str, dict[str, str | None]] = {}

    # features

    def column(self, name: str) -> list[Any]:
        if name not in self._columns:
            self._columns[name] = [_py(v) for v in self.features[name].tolist()]
        return self._columns[name]

    def kind(self, name: str) -> str:
        types = self.frames["marts.customer_features"].attrs.get("types") or {}
        if name in types:
            return _kind_of_sql(types[name])
        return _kind_of_values(self.features[name], self.column(name))

    def as_text(self, name: str, value: Any) -> str:
        """A feature value as text, as SQL casts it (DECIMAL keeps its scale, booleans are lower-case)."""
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "true" if value else "false"
        sql_type = (self.frames["marts.customer_features"].attrs.get("types") or {}).get(name, "").upper()
        if isinstance(value, datetime) and sql_type == "DATE":
            return value.date().isoformat()
        if isinstance(value, datetime):
            return value.isoformat(sep=" ")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, float):
            scale = re.match(r"DECIMAL\(\d+,\s*(\d+)\)", sql_type)
            if scale:
                return f"{value:.{int(scale.group(1))}f}"
            return repr(value)
        return str(value)

    # conditions

    def condition(self, cond) -> set[str]:
        if isinstance(cond, AllGroup):
            out = set(self.universe)
            for child in cond.all:
                out &= self.condition(child)
            return out
        if isinstance(cond, AnyGroup):
            out: set[str] = set()
            for child in cond.any:
                out |= self.condition(child)
            return out
        if isinstance(cond, NotGroup):
            return self.universe - self.condition(cond.not_)
        if isinstance(cond, FieldCondition):
            return self.field(cond)
        if isinstance(cond, BehaviourCondition):
            return self.behaviour(cond)
        raise TypeError(f"not a condition: {cond!r}")

    def field(self, cond: FieldCondition) -> set[str]:
        values = self.column(cond.field)
        if cond.op == "is_null":
            return {c for c, v in zip(self.ids, values, strict=True) if v is None}
        if cond.op == "is_not_null":
            return {c for c, v in zip(self.ids, values, strict=True) if v is not None}
        test = self._field_test(cond, self.kind(cond.field))
        return {c for c, v in zip(self.ids, values, strict=True) if v is not None and test(v)}

    def _field_test(self, cond: FieldCondition, kind: str) -> Callable[[Any], bool]:
        op, value = cond.op, cond.value
        as_of = self.as_of
        if kind == "list":
            if op in ("has_tag", "contains"):
                return lambda v: value in v
            raise ValueError(f"op {op} on a list feature")
        if kind == "text" and op == "contains":
            return lambda v: value in v
        if kind == "date" and cond.ignore_year:
            as_md = lambda v: month_day_of(v.date() if isinstance(v, datetime) else v, as_of)  # noqa: E731
            if op == "=":
                target = resolve_month_day(value, as_of)
                return lambda v: as_md(v) == target
            if op == "between":
                low, high = (resolve_month_day(x, as_of) for x in value)
                if low <= high:
                    return lambda v: low <= as_md(v) <= high
                return lambda v: low <= as_md(v) or as_md(v) <= high
            raise ValueError(f"ignore_year with op {op}")
        if kind == "date":
            convert: Callable[[Any], Any] = lambda v: v.date() if isinstance(v, datetime) else v  # noqa: E731
            literal: Callable[[Any], Any] = lambda x: resolve_date(x, as_of)  # noqa: E731
        else:
            convert = lambda v: v  # noqa: E731
            literal = lambda x: x  # noqa: E731
        if op == "between":
            low, high = literal(value[0]), literal(value[1])
            return lambda v: low <= convert(v) <= high
        if op in ("in", "not_in"):
            options = [literal(x) for x in value]
            if op == "in":
                return lambda v: any(convert(v) == o for o in options)
            return lambda v: all(convert(v) != o for o in options)
        target = literal(value)
        compare: dict[str, Callable[[Any, Any], bool]] = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }
        if op not in compare:
            raise ValueError(f"op {op} on a {kind} feature")
        fn = compare[op]
        return lambda v: fn(convert(v), target)

    # behaviour

    def fact(self, name: str) -> pd.DataFrame:
        """A fact mart with money in cents and, for order lines, the order's store and channel."""
        if name not in self._facts:
            df = self.frames[f"marts.{name}"].copy()
            for money in ("total_amount", "line_amount", "points"):
                if money in df.columns:
                    df[money + "_cents"] = _cents(df[money])
            if name == "fct_order_lines":  # the order's store and channel, from the orders themselves
                orders = self.frames["marts.fct_orders"][["order_id", "store_id", "channel"]]
                df = df.drop(columns=["store_id", "channel"], errors="ignore").merge(orders, on="order_id", how="left")
            self._facts[name] = df
        return self._facts[name]

    def behaviour(self, cond: BehaviourCondition) -> set[str]:
        source, metric = cond.source, cond.metric
        start, end = window_bounds(cond.within.n, cond.within.unit, self.as_of)

        def isin(df: pd.DataFrame, column: str, options: list[str] | None) -> pd.DataFrame:
            return df if options is None else df[df[column].isin(options)]

        if source == "purchase":
            f = cond.purchase
            use_lines = f.by_product or metric in LINE_METRICS
            df = self.fact("fct_order_lines" if use_lines else "fct_orders")
            df = isin(df, "status", list(f.status))
            for column in ("category", "brand", "product_id", "store_id", "channel"):
                df = isin(df, column, getattr(f, column))
            time_col = "ordered_at"
        elif source == "event":
            f = cond.event
            df = isin(isin(self.fact("fct_events"), "event_type", f.type), "channel", f.channel)
            time_col = "occurred_at"
        elif source == "message":
            f = cond.message
            df = isin(isin(self.fact("fct_messages"), "channel", f.channel), "campaign_id", f.campaign_id)
            time_col = MESSAGE_TIME[f.action]
        elif source == "bonus":
            f = cond.bonus
            df = isin(self.fact("fct_bonus_transactions"), "reason", f.reason)
            if f.sign == "accrual":
                df = df[df["points"] > 0]
            elif f.sign == "redemption":
                df = df[df["points"] < 0]
            time_col = "occurred_at"
        else:
            raise ValueError(source)

        times = pd.to_datetime(df[time_col])
        df = df[times.notna() & (times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))]
        df = df[df["customer_id"].notna()]
        groups = df.groupby("customer_id")
        if metric == "count":
            by_order = source == "purchase" and cond.purchase.by_product
            per = groups["order_id"].nunique() if by_order else groups.size()
            values = {str(k): float(v) for k, v in per.items()}
        elif metric == "distinct_days":
            days = pd.to_datetime(df[time_col]).dt.date
            per = days.groupby(df["customer_id"]).nunique()
            values = {str(k): float(v) for k, v in per.items()}
        elif metric in ("sum_amount", "sum_points"):
            column = {"sum_points": "points_cents"}.get(metric)
            if column is None:
                column = "line_amount_cents" if cond.purchase.by_product else "total_amount_cents"
            per = groups[column].sum(min_count=1)
            values = {str(k): (0.0 if pd.isna(v) else int(v) / 100) for k, v in per.items()}
        elif metric == "sum_quantity":
            per = groups["quantity"].sum(min_count=1)
            values = {str(k): (0.0 if pd.isna(v) else float(v)) for k, v in per.items()}
        else:
            column = {
                "distinct_products": "product_id",
                "distinct_categories": "category",
                "distinct_campaigns": "campaign_id",
            }[metric]
            per = groups[column].nunique()
            values = {str(k): float(v) for k, v in per.items()}

        checks = cond.comparison.checks
        compare: dict[str, Callable[[float, float], bool]] = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }
        return {c for c in self.ids if all(compare[op](values.get(c, 0.0), n) for op, n in checks.items())}

    # segments

    def members(self, key: str) -> dict[str, str | None]:
        if key not in self._results:
            self._results[key] = self._evaluate(self.segments[key])
        return self._results[key]

    def _evaluate(self, seg: Segment) -> dict[str, str | None]:
        arms: dict[str, str | None]
        if seg.priority is not None:
            arms = {}
            for ref in seg.priority:
                for c in self.members(ref):
                    arms.setdefault(c, ref)
            base = set(arms)
        elif seg.from_ is not None:
            src = seg.from_
            if src.union:
                base = set()
                for ref in src.union:
                    base |= set(self.members(ref))
                for ref in src.intersect or []:
                    base &= set(self.members(ref))
            else:
                refs = list(src.intersect or [])
                base = set(self.members(refs[0]))
                for ref in refs[1:]:
                    base &= set(self.members(ref))
            for ref in src.minus:
                base -= set(self.members(ref))
            arms = {}
        else:
            base = set(self.universe)
            arms = {}
        if seg.rules is not None:
            base &= self.condition(seg.rules)
        base &= self.universe
        if seg.priority is not None:
            return {c: arms[c] for c in sorted(base)}
        split = seg.split
        if split is None:
            return {c: None for c in sorted(base)}
        if split.by_field is not None:
            values = dict(zip(self.ids, self.column(split.by_field), strict=True))
            return {c: self.as_text(split.by_field, values[c]) for c in sorted(base)}
        weights = split.arm_weights()
        total = sum(weights.values())
        scale = 1.0 if total == 100 else 100.0 / total
        bounds: list[tuple[float, str]] = []
        upper = 0.0
        for name, weight in weights.items():
            upper += weight * scale
            bounds.append((upper, name))
        out: dict[str, str | None] = {}
        for c in sorted(base):
            b = bucket(split.salt, c)
            out[c] = next((name for limit, name in bounds if b < limit), bounds[-1][1])
        return out

    def with_segments(self, segments: dict[str, Segment]) -> Reference:
        """The same data (and its prepared columns) with other definitions."""
        other = Reference.__new__(Reference)
        other.__dict__.update(self.__dict__)
        other.segments = segments
        other._results = {}
        return other


_LAST: list[Reference] = []  # the data prepared for the last frames seen (columns and facts are reused)


def reference_members(
    frames: dict[str, pd.DataFrame], segments: dict[str, Segment], key: str, as_of: date
) -> dict[str, str | None]:
    """Each member customer_id of segment `key` → its arm (None when the segment has no arms)."""
    if _LAST and _LAST[0].frames is frames and _LAST[0].as_of == as_of:
        ref = _LAST[0].with_segments(segments)
    else:
        ref = Reference(frames, segments, as_of)
        _LAST[:] = [ref]
    return ref.members(key)
