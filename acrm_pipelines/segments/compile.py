"""Segment definitions → SQL expression trees built with sqlglot (never from text).

Every rule becomes a boolean expression over one *wide* row per customer: the columns of
`marts.customer_features` plus one column per distinct behaviour aggregate (e.g. "email clicks in the
last 6 days"), computed by one GROUP BY per fact mart for all segments together. Feature names are
checked against the catalogue and quoted; values become literals of the tree, so no definition can
change the structure of the SQL. `explain_sql` renders a whole segment for DuckDB, PostgreSQL or Spark SQL:
where DuckDB's SQL would mean something else there (the split hash, text order, a date's text), the tree is
built for the dialect, and what cannot be said the same way is refused, naming the segment and the construct.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from sqlglot import exp

from acrm_pipelines.segments.catalogue import Catalogue, kind_of
from acrm_pipelines.segments.dates import cutoff, month_day, parse_date, window_start
from acrm_pipelines.segments.spec import (
    AllGroup,
    AnyGroup,
    BehaviourCondition,
    FieldCondition,
    NotGroup,
    Segment,
)

FEATURES = ("marts", "customer_features")
# The dialects explain_sql prints, each tested on its own engine (tests/test_explain_dialects.py).
DIALECTS = ("duckdb", "postgres", "spark")
WIDE = "w"  # alias of the wide row in every predicate
KEY = "customer_id"

_COMPARE = {
    "=": exp.EQ,
    "!=": exp.NEQ,
    "<": exp.LT,
    "<=": exp.LTE,
    ">": exp.GT,
    ">=": exp.GTE,
}


class CompileError(ValueError):
    pass


def col(name: str, table: str | None = WIDE) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def table(schema: str, name: str, alias: str | None = None) -> exp.Table:
    return exp.table_(name, db=schema, quoted=True, alias=alias)


def literal(value: object) -> exp.Expression:
    if isinstance(value, bool):
        return exp.true() if value else exp.false()
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    if isinstance(value, datetime):  # before date: a datetime is a date too
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), exp.DataType.Type.TIMESTAMP)
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.Type.DATE)
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise CompileError(f"cannot use {value!r} as a value")


def two_valued(predicate: exp.Expression) -> exp.Expression:
    """NULL (a comparison with a missing value) counts as false, so NOT behaves as documented."""
    return exp.func("COALESCE", exp.paren(predicate), exp.false())


# --- behaviour aggregates ------------------------------------------------------------------------------

SOURCE_TABLES = {
    "orders": ("marts", "fct_orders", "ordered_at"),
    "order_lines": ("marts", "fct_order_lines", "ordered_at"),
    "events": ("marts", "fct_events", "occurred_at"),
    "messages": ("marts", "fct_messages", "sent_at"),
    "bonus": ("marts", "fct_bonus_transactions", "occurred_at"),
}
LINE_METRICS = ("sum_quantity", "distinct_products", "distinct_categories")


@dataclass(frozen=True)
class Aggregate:
    """One per-customer number for a behaviour condition, without its threshold."""

    name: str
    table: str  # a key of SOURCE_TABLES
    time_column: str
    start: datetime
    filters: tuple[tuple[str, tuple[object, ...]], ...]  # (column, allowed values)
    sign: str  # bonus: any | accrual | redemption
    metric: str

    def expression(self, end: datetime) -> exp.Expression:
        t = col(self.time_column, None)
        conds: list[exp.Expression] = [t >= literal(self.start), t < literal(end)]
        for column, values in self.filters:
            conds.append(col(column, None).isin(*[literal(v) for v in values]))
        if self.sign == "accrual":
            conds.append(col("points", None) > exp.Literal.number(0))
        elif self.sign == "redemption":
            conds.append(col("points", None) < exp.Literal.number(0))
        where = exp.and_(*conds)
        metric = self.metric
        if metric == "count":
            agg = (
                exp.Count(this=exp.Distinct(expressions=[col("order_id", None)]))
                if self.table == "order_lines"
                else exp.Count(this=exp.Star())
            )
        elif metric == "distinct_days":
            agg = exp.Count(this=exp.Distinct(expressions=[exp.cast(t, exp.DataType.Type.DATE)]))
        elif metric == "sum_amount":
            amount = "line_amount" if self.table == "order_lines" else "total_amount"
            agg = exp.Sum(this=col(amount, None))
        elif metric == "sum_quantity":
            agg = exp.Sum(this=col("quantity", None))
        elif metric == "distinct_products":
            agg = exp.Count(this=exp.Distinct(expressions=[col("product_id", None)]))
        elif metric == "distinct_categories":
            agg = exp.Count(this=exp.Distinct(expressions=[col("category", None)]))
        elif metric == "distinct_campaigns":
            agg = exp.Count(this=exp.Distinct(expressions=[col("campaign_id", None)]))
        elif metric == "sum_points":
            agg = exp.Sum(this=col("points", None))
        else:
            raise CompileError(f"unknown metric {metric}")
        return exp.Filter(this=agg, expression=exp.Where(this=where))


def aggregate_for(cond: BehaviourCondition, as_of: date) -> Aggregate:
    source, metric = cond.source, cond.metric
    filters: list[tuple[str, tuple[object, ...]]] = []
    sign = "any"
    if source == "purchase":
        p = cond.purchase
        by_lines = p.by_product or metric in LINE_METRICS
        name = "order_lines" if by_lines else "orders"
        for column in ("category", "brand", "product_id", "store_id", "channel"):
            values = getattr(p, column)
            if values is not None:
                filters.append((column, tuple(values)))
        filters.append(("status", tuple(p.status)))
        time_column = "ordered_at"
    elif source == "event":
        e = cond.event
        name, time_column = "events", "occurred_at"
        if e.type is not None:
            filters.append(("event_type", tuple(e.type)))
        if e.channel is not None:
            filters.append(("channel", tuple(e.channel)))
    elif source == "message":
        m = cond.message
        name, time_column = "messages", f"{m.action}_at"
        if m.channel is not None:
            filters.append(("channel", tuple(m.channel)))
        if m.campaign_id is not None:
            filters.append(("campaign_id", tuple(m.campaign_id)))
    else:
        b = cond.bonus
        name, time_column, sign = "bonus", "occurred_at", b.sign
        if b.reason is not None:
            filters.append(("reason", tuple(b.reason)))
    start = window_start(cond.within, as_of)
    spec = json.dumps([name, time_column, start.isoformat(), filters, sign, metric], default=str)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:10]
    return Aggregate(f"b_{digest}", name, time_column, start, tuple(filters), sign, metric)


# --- rules -------------------------------------------------------------------------------------------------


@dataclass
class Compiler:
    """Compiles rules for one as-of date, remembering which features and aggregates they read."""

    catalogue: Catalogue
    as_of: date
    dialect: str = "duckdb"  # the engine's leaves are DuckDB's; explain_sql may ask for postgres or spark
    features: set[str] = field(default_factory=set)
    aggregates: dict[str, Aggregate] = field(default_factory=dict)

    def rules(self, cond) -> exp.Expression:
        if isinstance(cond, AllGroup):
            return exp.and_(*[exp.paren(self.rules(c)) for c in cond.all])
        if isinstance(cond, AnyGroup):
            return exp.or_(*[exp.paren(self.rules(c)) for c in cond.any])
        if isinstance(cond, NotGroup):
            return exp.not_(exp.paren(self.rules(cond.not_)))
        if isinstance(cond, FieldCondition):
            return two_valued(self._field(cond))
        if isinstance(cond, BehaviourCondition):
            return self._behaviour(cond)
        raise CompileError(f"unknown condition {cond!r}")

    def _behaviour(self, cond: BehaviourCondition) -> exp.Expression:
        agg = aggregate_for(cond, self.as_of)
        self.aggregates[agg.name] = agg
        value = col(agg.name)  # already 0 for customers with nothing in the window
        checks = [
            _COMPARE[op](this=value, expression=exp.Literal.number(n)) for op, n in cond.comparison.checks.items()
        ]
        return exp.and_(*checks)

    def _field(self, cond: FieldCondition) -> exp.Expression:
        kind = self.catalogue.kind(cond.field)
        if kind is None:
            raise CompileError(f"unknown feature {cond.field!r}")
        self.features.add(cond.field)
        column: exp.Expression = col(cond.field)
        op = cond.op
        if op == "is_null":
            return column.is_(exp.null())
        if op == "is_not_null":
            return exp.not_(column.is_(exp.null()))
        if kind == "list" or (op == "has_tag"):
            return exp.ArrayContains(this=column, expression=literal(cond.value))
        if op == "contains":
            return exp.StrPosition(this=column, substr=literal(cond.value)) > exp.Literal.number(0)
        if cond.ignore_year:
            return self._month_day(column, cond)
        if kind == "text" and self.dialect == "postgres":
            # DuckDB orders (and matches) text by its bytes; PostgreSQL by the column's or database's collation.
            column = exp.Collate(this=column, expression=exp.to_identifier("C", quoted=True))
        values = cond.value if isinstance(cond.value, list) else [cond.value]
        if kind in ("date", "timestamp"):
            column = exp.cast(column, exp.DataType.Type.DATE)
            values = [parse_date(v, self.as_of) for v in values]
        lits = [literal(v) for v in values]
        if op == "between":
            return exp.Between(this=column, low=lits[0], high=lits[1])
        if op == "in":
            return column.isin(*lits)
        if op == "not_in":
            return exp.not_(column.isin(*lits))
        return _COMPARE[op](this=column, expression=lits[0])

    def _month_day(self, column: exp.Expression, cond: FieldCondition) -> exp.Expression:
        md = month_day_expression(column, self.as_of)
        keys = [exp.Literal.number(k) for k in month_day_keys(cond, self.as_of)]
        if cond.op == "=":
            return md.eq(keys[0])
        low, high = int(keys[0].this), int(keys[1].this)
        if low <= high:
            return exp.Between(this=md, low=keys[0], high=keys[1])
        return exp.or_(md >= keys[0], md <= keys[1])  # wraps over the new year


def month_day_expression(column: exp.Expression, as_of: date) -> exp.Expression:
    """month × 100 + day of a date; 29 Feb is celebrated on 1 Mar outside leap years."""
    md: exp.Expression = exp.paren(
        exp.Mul(this=exp.Month(this=column), expression=exp.Literal.number(100)) + exp.Day(this=column)
    )
    if not leap(as_of.year):
        md = exp.Case(ifs=[exp.If(this=md.copy().eq(229), true=exp.Literal.number(301))], default=md)
    return md


def leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def month_day_keys(cond: FieldCondition, as_of: date) -> list[int]:
    """`ignore_year` values as month × 100 + day; 29 Feb counts as 1 Mar outside leap years."""
    values = cond.value if isinstance(cond.value, list) else [cond.value]
    keys = []
    for v in values:
        m, d = month_day(v, as_of)
        keys.append(301 if m * 100 + d == 229 and not leap(as_of.year) else m * 100 + d)
    return keys


# --- the wide row and whole-segment SQL --------------------------------------------------------------------


def wide_select(
    features: set[str], aggregates: dict[str, Aggregate], as_of: date, missing: frozenset[str] = frozenset()
) -> exp.Select:
    """customer_id, the features read, and every aggregate (0 when a customer has no rows), one row each.

    `missing` custom_* columns (absent from this landing folder) read as null, like any optional column.
    """
    f = "f"
    projections: list[exp.Expression] = [col(KEY, f).as_(KEY, quoted=True)]
    projections += [
        (exp.null() if name in missing else col(name, f)).as_(name, quoted=True) for name in sorted(features - {KEY})
    ]
    query = exp.select(*projections).from_(table(*FEATURES, alias=f))
    end = cutoff(as_of)
    by_table: dict[str, list[Aggregate]] = {}
    for agg in aggregates.values():
        by_table.setdefault(agg.table, []).append(agg)
    for i, (name, aggs) in enumerate(sorted(by_table.items())):
        schema, tbl, time_column = SOURCE_TABLES[name]
        first = min(a.start for a in aggs)
        alias = f"a{i}"
        sub = (
            exp.select(col(KEY, None), *[a.expression(end).as_(a.name, quoted=True) for a in aggs])
            .from_(table(schema, tbl))
            .where(
                exp.and_(
                    *[
                        exp.or_(
                            *[
                                exp.and_(col(c, None) >= literal(first), col(c, None) < literal(end))
                                for c in sorted({a.time_column for a in aggs})
                            ]
                        )
                    ]
                )
            )
            .group_by(col(KEY, None))
        )
        query = query.join(sub.subquery(alias), on=col(KEY, f).eq(col(KEY, alias)), join_type="left")
        query = query.select(
            *[exp.func("COALESCE", col(a.name, alias), exp.Literal.number(0)).as_(a.name, quoted=True) for a in aggs]
        )
    return query


def bucket(salt: str, dialect: str = "duckdb") -> exp.Expression:
    """A customer's split bucket in [0, 100): md5(salt:customer_id), first 8 hex digits / 2^32 × 100.

    The hex digits become a number by each dialect's own means (DuckDB: a `0x` literal cast to UBIGINT;
    PostgreSQL: `bit(32)`, read unsigned; Spark: `conv`); the division is a DOUBLE one everywhere, and
    dividing by 2^32 is exact, so every engine computes the same double for the same customer.
    """
    digest = exp.MD5(this=exp.DPipe(this=exp.Literal.string(f"{salt}:"), expression=col(KEY, None)))
    hex8 = exp.Substring(this=digest, start=exp.Literal.number(1), length=exp.Literal.number(8))
    if dialect == "postgres":
        bits = exp.cast(
            exp.DPipe(this=exp.Literal.string("x"), expression=hex8), exp.DataType.build("BIT(32)", dialect=dialect)
        )
        number = exp.cast(bits, exp.DataType.Type.BIGINT)
    elif dialect == "spark":
        number = exp.cast(
            exp.func("CONV", hex8, exp.Literal.number(16), exp.Literal.number(10)), exp.DataType.Type.BIGINT
        )
    else:
        number = exp.cast(exp.DPipe(this=exp.Literal.string("0x"), expression=hex8), exp.DataType.Type.UBIGINT)
    return exp.Div(this=number, expression=exp.Literal.number(2**32)) * exp.Literal.number(100)


def split_edges(weights: Mapping[str, float]) -> list[float]:
    """The upper bucket edge of each arm, computed as the engine computes them (evaluate.py), so the
    explained SQL puts every customer in the same arm: arm i holds edge[i-1] <= bucket < edge[i]."""
    return [float(e) for e in np.cumsum(list(weights.values())) / sum(weights.values()) * 100.0]


@dataclass(frozen=True)
class Target:
    """What the SQL is for: the dialect, and the SQL types of the features where known (by_field arms)."""

    dialect: str = "duckdb"
    types: Mapping[str, str] = field(default_factory=dict)


def rules_select(segment: Segment, catalogue: Catalogue, as_of: date, target: Target = Target()) -> exp.Select:
    """SELECT customer_id of the customers that satisfy the segment's rules."""
    comp = Compiler(catalogue, as_of, target.dialect)
    predicate = comp.rules(segment.rules)
    wide = wide_select(comp.features, comp.aggregates, as_of)
    return exp.select(col(KEY, None)).from_(wide.subquery(WIDE)).where(predicate)


def segment_select(
    key: str, segments, catalogue: Catalogue, as_of: date, target: Target = Target(), arms: bool = True
) -> exp.Query:
    """The whole segment as one query: customer_id (and arm when it has arms, unless `arms` is false)."""
    seg: Segment = segments[key]

    def ids(ref: str) -> exp.Query:
        return segment_select(ref, segments, catalogue, as_of, target, arms=False)

    base: exp.Query | None = None
    if seg.from_ is not None:
        src = seg.from_
        parts: list[exp.Query] = []
        if src.union:
            parts.append(_reduce(exp.union, [ids(r) for r in src.union]))
        if src.intersect:
            parts += [ids(r) for r in src.intersect]
        base = _reduce(exp.intersect, parts)
        if src.minus:
            base = _reduce(exp.except_, [base, _reduce(exp.union, [ids(r) for r in src.minus])])
    elif seg.priority is not None:
        base = _reduce(exp.union, [ids(r) for r in seg.priority])
    if seg.rules is not None:
        rules = rules_select(seg, catalogue, as_of, target)
        base = rules if base is None else _reduce(exp.intersect, [base, rules])
    members = exp.select(col(KEY, None)).from_(base.subquery("m"))
    if not arms:
        return members
    if seg.priority is not None:
        return _priority(seg, members, ids)
    if seg.split is not None:
        if seg.split.by_field is None:
            return members.select(_split_arm(seg, target.dialect).as_("arm"))
        return (
            exp.select(col(KEY), field_arm(key, seg.split.by_field, catalogue, target).as_("arm"))
            .from_(table(*FEATURES, alias=WIDE))
            .where(col(KEY).isin(query=members))
        )
    return members


def _priority(seg: Segment, members: exp.Select, ids) -> exp.Query:
    """Each member's arm is the first listed segment that holds them: the least rank among the listed
    segments' rows (a subquery in a CASE, as `IN (…)`, is not allowed by Spark outside WHERE)."""
    ranked = _reduce(
        lambda a, b: exp.union(a, b, distinct=False),
        [
            exp.select(col(KEY, None), exp.Literal.number(i).as_("p")).from_(ids(r).subquery("s"))
            for i, r in enumerate(seg.priority)
        ],
    )
    first = exp.Min(this=exp.column("p"))
    arm = exp.Case(
        this=first,
        ifs=[exp.If(this=exp.Literal.number(i), true=exp.Literal.string(r)) for i, r in enumerate(seg.priority)],
    )
    return (
        exp.select(col(KEY, None), arm.as_("arm"))
        .from_(ranked.subquery("r"))
        .where(col(KEY, None).isin(query=members))
        .group_by(col(KEY, None))
    )


def _split_arm(seg: Segment, dialect: str) -> exp.Expression:
    weights = seg.split.arm_weights()
    b = bucket(seg.split.salt or "", dialect)
    names = list(weights)
    ifs = [
        exp.If(
            this=b.copy() < exp.cast(exp.Literal.number(edge), exp.DataType.Type.DOUBLE),
            true=exp.Literal.string(name),
        )
        for name, edge in zip(names[:-1], split_edges(weights), strict=False)
    ]
    return exp.Case(ifs=ifs, default=exp.Literal.string(names[-1]))


_EXACT_NUMBERS = ("tinyint", "smallint", "int", "bigint", "hugeint", "utinyint", "usmallint", "uinteger", "ubigint")


def field_arm(key: str, name: str, catalogue: Catalogue, target: Target) -> exp.Expression:
    """A by_field arm: the value as DuckDB writes it as text, 'none' when null. Another dialect must write the
    same text; a date or timestamp follows PostgreSQL's DateStyle, so it is formatted explicitly there, and a
    floating-point number (DuckDB writes 100.0, PostgreSQL 100, Spark 1.0E20 for 1e+20) or a feature of unknown
    type is refused."""
    column = col(name)
    kind = catalogue.kind(name)
    dialect = target.dialect
    text: exp.Expression = exp.cast(column, exp.DataType.Type.VARCHAR)
    if dialect != "duckdb":
        sql_type = target.types.get(name, "").strip().lower()
        if kind == "any" and sql_type:
            kind = kind_of(sql_type)
        if kind in ("number", "any") and name.startswith("custom_") and not sql_type:
            why = "its type is not known before the DuckDB file has marts.customer_features"
            _refuse(key, dialect, f"split.by_field {name}: {why}")
        if kind == "number" and sql_type and not sql_type.startswith((*_EXACT_NUMBERS, "decimal", "numeric")):
            _refuse(
                key,
                dialect,
                f"split.by_field {name} is a {sql_type.upper()} column, whose values {dialect} writes as other "
                "text than DuckDB (the arm names)",
            )
        if kind not in ("text", "number", "boolean", "date", "timestamp"):
            _refuse(key, dialect, f"split.by_field {name} ({kind or 'unknown'} feature) has no portable text form")
        if dialect == "postgres" and kind == "date":
            text = exp.func("TO_CHAR", column, exp.Literal.string("YYYY-MM-DD"), dialect=dialect)
        elif dialect == "postgres" and kind == "timestamp":  # 2024-01-01 10:00:00[.5], as DuckDB writes it
            full = exp.func("TO_CHAR", column, exp.Literal.string("YYYY-MM-DD HH24:MI:SS.US"), dialect=dialect)
            text = exp.func(
                "RTRIM", exp.func("RTRIM", full, exp.Literal.string("0")), exp.Literal.string("."), dialect=dialect
            )
    return exp.func("COALESCE", text, exp.Literal.string("none"))


def _refuse(key: str, dialect: str, construct: str):
    raise CompileError(f"segment {key!r} cannot be explained for {dialect}: {construct}")


def _reduce(op, queries: list[exp.Query]) -> exp.Query:
    """Left to right; an operand that is itself a set operation becomes a derived table, since SQL binds
    INTERSECT tighter than UNION and EXCEPT (`a UNION b INTERSECT c` is `a UNION (b INTERSECT c)`)."""

    def operand(q: exp.Query, i: int) -> exp.Query:
        return exp.select(col(KEY, None)).from_(q.subquery(f"u{i}")) if isinstance(q, exp.SetOperation) else q

    out = operand(queries[0], 0)
    for i, q in enumerate(queries[1:], start=1):
        out = op(out, operand(q, i))  # the same operation again: left to right as written
    return out


def filters_as_case(node: exp.Expression) -> exp.Expression:
    """`AGG(x) FILTER (WHERE c)` as `AGG(CASE WHEN c THEN x END)` (the same value: the aggregates skip nulls)."""
    if not isinstance(node, exp.Filter):
        return node
    agg, cond = node.this, node.expression.this
    arg = agg.this
    if isinstance(arg, exp.Star):
        return exp.Count(this=exp.Case(ifs=[exp.If(this=cond, true=exp.Literal.number(1))]))
    if isinstance(arg, exp.Distinct):
        inner = exp.Case(ifs=[exp.If(this=cond, true=arg.expressions[0])])
        return agg.__class__(this=exp.Distinct(expressions=[inner]))
    return agg.__class__(this=exp.Case(ifs=[exp.If(this=cond, true=arg)]))


def explain_sql(
    key: str,
    segments,
    catalogue: Catalogue,
    as_of: date,
    dialect: str = "duckdb",
    features_day: date | None = None,
    column_types: Mapping[str, str] | None = None,
) -> str:
    """The segment as one query for `dialect` (one of DIALECTS); with `features_day`, reading that built day's
    features from the history (`marts.customer_features_on(day)`, a DuckDB table macro) instead of the current
    table. `column_types`: the SQL types of marts.customer_features (a by_field split on a custom number
    column needs them outside DuckDB). A construct another dialect cannot say the same way is a CompileError
    naming the segment and the construct."""
    dialect = dialect.lower()
    if dialect not in DIALECTS:
        raise CompileError(
            f"dialect {dialect!r} is not supported: choose one of {', '.join(DIALECTS)} "
            "(the engines the printed SQL is tested on)"
        )
    if features_day is not None and dialect != "duckdb":
        raise CompileError(f"the features of {features_day} are in DuckDB's history only (customer_features_on)")
    target = Target(dialect, dict(column_types or {}))
    query = segment_select(key, segments, catalogue, as_of, target)
    if dialect == "spark":
        query = query.transform(filters_as_case)
    if features_day is not None:
        on_day = exp.Anonymous(this="customer_features_on", expressions=[literal(features_day)])

        def past(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Table) and (node.db, node.name) == FEATURES:
                return exp.Table(this=on_day.copy(), db=exp.to_identifier(FEATURES[0]), alias=node.args.get("alias"))
            return node

        query = query.transform(past)
    return query.sql(dialect=dialect, pretty=True)
