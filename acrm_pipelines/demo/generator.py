"""Deterministic demo data in the input contract (docs/demo-data.md), from 1 thousand to 10 million customers.

Customers are generated in chunks; each chunk's customers, orders, lines, events, messages and bonus
transactions are vectorised with numpy and written as one part file per table, so memory stays flat
however many customers are asked for. A last part file per table holds the deliberately bad rows
(one problem each, so their quarantine reason is known in advance and returned in the summary).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from acrm_pipelines.demo import vocab

TABLES = ("customers", "products", "orders", "order_lines", "events", "messages", "bonus_transactions")
CHUNK = 250_000  # customers per part file
BAD_SHARE = 0.0005  # deliberately bad rows per reason: 0.05 % of the table, at least one
DEFAULT_END = date(2026, 11, 20)


@dataclass
class Summary:
    tables: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    bad_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"tables": self.tables, "bad_rows": self.bad_rows, "files": self.files}


class _Writer:
    """One folder per table, one part file per chunk, CSV or Parquet."""

    def __init__(self, landing: Path, fmt: str, summary: Summary):
        self.landing, self.fmt, self.summary = landing, fmt, summary
        self.parts: dict[str, int] = {}

    def write(self, name: str, columns: dict[str, object]) -> None:
        table = pa.table({k: pa.array(v) if not isinstance(v, pa.Array) else v for k, v in columns.items()})
        if table.num_rows == 0:
            return
        part = self.parts.get(name, 0)
        self.parts[name] = part + 1
        folder = self.landing / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{part:05d}.{self.fmt}"
        if self.fmt == "csv":
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path)
        self.summary.tables[name] += table.num_rows
        self.summary.files.setdefault(name, []).append(path.relative_to(self.landing).as_posix())


def _ts(seconds: np.ndarray) -> pa.Array:
    """Seconds since the epoch → timestamp column (written as `YYYY-MM-DD HH:MM:SS`)."""
    return pa.array(seconds.astype("datetime64[s]"))


def _money(values: np.ndarray) -> pa.Array:
    return pa.array(np.round(values, 2)).cast(pa.decimal128(18, 2))


class _Calendar:
    """Day weights over the history: growth, a November–December peak and busier weekends."""

    def __init__(self, start: date, end: date):
        self.start = start
        self.days = (end - start).days + 1
        day = np.arange(self.days)
        dates = np.datetime64(start.isoformat()) + day
        months = dates.astype("datetime64[M]").astype(int) % 12 + 1
        weekday = (dates.astype("datetime64[D]").astype(int) + 3) % 7  # 0 = Monday
        weight = (1.0 + day / self.days) * np.where(np.isin(months, (11, 12)), 1.6, 1.0)
        weight *= np.where(weekday >= 5, 1.25, 1.0)
        self.cdf = np.cumsum(weight) / weight.sum()
        self.epoch0 = int((datetime.combine(start, datetime.min.time()) - datetime(1970, 1, 1)).total_seconds())

    def sample_after(self, rng: np.random.Generator, first_day: np.ndarray) -> np.ndarray:
        """A seasonal day on or after `first_day` (day index) for each entry."""
        low = np.where(first_day > 0, self.cdf[np.maximum(first_day - 1, 0)], 0.0)
        u = low + rng.random(len(first_day)) * (1.0 - low)
        return np.minimum(np.searchsorted(self.cdf, u), self.days - 1)

    def seconds(self, rng: np.random.Generator, day: np.ndarray, earliest_hour: int = 8) -> np.ndarray:
        start = earliest_hour * 3600
        return self.epoch0 + day.astype(np.int64) * 86_400 + rng.integers(start, 86_400, len(day))


def _products(rng: np.random.Generator, n: int) -> tuple[dict, np.ndarray, np.ndarray]:
    category = rng.integers(0, len(vocab.CATEGORIES), n)
    brand = rng.integers(0, len(vocab.BRANDS), n)
    price = np.round(rng.lognormal(6.0, 0.8, n), 0) + 0.99
    ids = np.array([f"P{i:06d}" for i in range(n)])
    columns = {
        "product_id": ids,
        "name": [
            f"{vocab.BRANDS[b]} {vocab.CATEGORIES[c].lower()} #{i}"
            for i, (c, b) in enumerate(zip(category, brand, strict=True))
        ],
        "category": np.array(vocab.CATEGORIES)[category],
        "brand": np.array(vocab.BRANDS)[brand],
    }
    popularity = 1.0 / np.arange(1, n + 1) ** 0.9  # a few bestsellers, a long tail
    return columns, price, popularity / popularity.sum()


def _phones(rng: np.random.Generator, country: np.ndarray) -> list[str | None]:
    """Mixed national and international formats; a few invalid or missing."""
    n = len(country)
    digits = rng.integers(0, 10_000_000, n)
    style = rng.integers(0, 6, n)
    ru_prefix = np.array(vocab.RU_MOBILE)[rng.integers(0, len(vocab.RU_MOBILE), n)]
    kz_prefix = np.array(vocab.KZ_MOBILE)[rng.integers(0, len(vocab.KZ_MOBILE), n)]
    broken = rng.random(n)
    out: list[str | None] = []
    for i in range(n):
        if broken[i] < 0.03:
            out.append(None)
            continue
        if broken[i] < 0.04:
            out.append("12-34")  # not a phone: kept, phone is null in the features
            continue
        code = kz_prefix[i] if country[i] == "KZ" else ru_prefix[i]
        d = f"{digits[i]:07d}"
        s = style[i]
        if s == 0:
            out.append(f"+7 {code} {d[:3]}-{d[3:5]}-{d[5:]}")
        elif s == 1:
            out.append(f"8 ({code}) {d[:3]}-{d[3:5]}-{d[5:]}")
        elif s == 2:
            out.append(f"8{code}{d}")
        elif s == 3:
            out.append(f"+7{code}{d}")
        elif s == 4:
            out.append(f"7 {code} {d}")
        else:
            out.append(f"({code}) {d[:3]} {d[3:]}")
    return out


def _customers(rng, ids: np.ndarray, cal: _Calendar, end: date) -> tuple[dict, np.ndarray]:
    n = len(ids)
    female = rng.random(n) < 0.58
    first = np.where(
        female,
        np.array(vocab.FEMALE_NAMES)[rng.integers(0, len(vocab.FEMALE_NAMES), n)],
        np.array(vocab.MALE_NAMES)[rng.integers(0, len(vocab.MALE_NAMES), n)],
    )
    last_idx = rng.integers(0, len(vocab.LAST_NAMES), n)
    last = np.array(vocab.LAST_NAMES)[last_idx]
    last = np.where(female, np.char.add(last, "a"), last)
    country = np.where(rng.random(n) < 0.9, "RU", "KZ")
    city_idx = rng.integers(0, len(vocab.RU_CITIES), n)
    kz_idx = rng.integers(0, len(vocab.KZ_CITIES), n)
    city = np.where(country == "RU", np.array(vocab.RU_CITIES)[city_idx], np.array(vocab.KZ_CITIES)[kz_idx])
    region = np.where(country == "RU", np.array(vocab.RU_REGIONS)[city_idx], np.array(vocab.KZ_REGIONS)[kz_idx])
    # Registration: growing over the history; day index into the calendar.
    reg_day = cal.sample_after(rng, np.zeros(n, dtype=np.int64))
    reg_seconds = cal.seconds(rng, reg_day)
    # Birth dates between 18 and 75 years before the end; a few 29 Feb and missing.
    age_days = rng.integers(18 * 365, 75 * 365, n)
    birth = np.datetime64(end.isoformat()) - age_days.astype("timedelta64[D]")
    leap = rng.random(n) < 0.003
    birth = np.where(leap, np.datetime64("1992-02-29") + np.zeros(n, dtype="timedelta64[D]"), birth)
    birth_arr = pa.array(birth.astype("datetime64[D]"), mask=rng.random(n) < 0.05)
    email_ok = rng.random(n) > 0.04
    domains = np.array(vocab.EMAIL_DOMAINS)[rng.integers(0, len(vocab.EMAIL_DOMAINS), n)]
    shouty = rng.random(n) < 0.05  # upper case and spaces, to be trimmed and lower-cased on load
    emails: list[str | None] = []
    for i in range(n):
        if not email_ok[i]:
            emails.append(None)
            continue
        e = f"{vocab.translit(first[i])}.{vocab.translit(last[i])}{ids[i][-4:]}@{domains[i]}"
        emails.append(f"  {e.upper()} " if shouty[i] else e)
    tag_bits = rng.random((n, len(vocab.TAGS))) < np.array(vocab.TAG_SHARES)
    tags = [";".join(t for t, on in zip(vocab.TAGS, row, strict=True) if on) or None for row in tag_bits]

    def consent(p: float) -> pa.Array:
        return pa.array(rng.random(n) < p, mask=rng.random(n) < 0.02)

    columns = {
        "customer_id": ids,
        "first_name": first,
        "last_name": last,
        "gender": np.where(female, "f", "m"),
        "birth_date": birth_arr,
        "email": emails,
        "phone": _phones(rng, country),
        "city": city,
        "region": region,
        "country": country,
        "registered_at": _ts(reg_seconds),
        "tags": tags,
        "consent_email": consent(0.7),
        "consent_sms": consent(0.45),
        "consent_push": consent(0.3),
        "custom_loyalty_tier": np.array(["basic", "silver", "gold"])[np.minimum(rng.geometric(0.6, n) - 1, 2)],
        "custom_pet_owner": rng.random(n) < 0.3,
        "custom_referral_score": rng.integers(0, 100, n),
    }
    return columns, reg_day


def _chunk(rng, start: int, stop: int, cal: _Calendar, end: date, products, w: _Writer, counters: dict) -> None:
    ids = np.array([f"C{i:08d}" for i in range(start, stop)])
    customers, reg_day = _customers(rng, ids, cal, end)
    w.write("customers", customers)
    n = len(ids)

    # Orders: most customers buy rarely, a few often (negative binomial, mean ~8).
    per_customer = rng.negative_binomial(0.6, 0.6 / (0.6 + 8.0), n)
    cust = np.repeat(np.arange(n), per_customer)
    m = len(cust)
    day = cal.sample_after(rng, reg_day[cust])
    ordered = cal.seconds(rng, day)
    order_ids = np.array([f"O{i:010d}" for i in range(counters["orders"], counters["orders"] + m)])
    counters["orders"] += m
    # Lines: 1–5 products per order, popular products more often.
    lines_per_order = 1 + np.minimum(rng.poisson(0.8, m), 4)
    line_order = np.repeat(np.arange(m), lines_per_order)
    product_ids, price, popularity = products
    line_product = rng.choice(len(price), len(line_order), p=popularity)
    quantity = 1 + np.minimum(rng.geometric(0.7, len(line_order)) - 1, 5)
    line_price = price[line_product]
    total = np.bincount(line_order, weights=quantity * line_price, minlength=m)
    status = np.array(["completed", "cancelled", "returned"])[
        np.searchsorted([0.88, 0.95], rng.random(m), side="right")
    ]
    w.write(
        "orders",
        {
            "order_id": order_ids,
            "customer_id": ids[cust],
            "ordered_at": _ts(ordered),
            "total_amount": _money(total),
            "status": status,
            "store_id": np.array([f"S{i:02d}" for i in range(1, 31)])[np.minimum(rng.geometric(0.15, m) - 1, 29)],
            "channel": np.array(["web", "app", "store"])[rng.integers(0, 3, m)],
        },
    )
    w.write(
        "order_lines",
        {
            "order_id": order_ids[line_order],
            "product_id": product_ids[line_product],
            "quantity": quantity,
            "price": _money(line_price),
        },
    )

    # Bonus: 5 % of each completed order, some later redeemed (never more than was earned).
    done = status == "completed"
    accrual = np.round(total[done] * 0.05, 0)
    acc_cust, acc_time = cust[done], ordered[done]
    redeem = rng.random(len(accrual)) < 0.25
    red_time = acc_time[redeem] + rng.integers(86_400, 120 * 86_400, redeem.sum())
    red_points = -np.round(accrual[redeem] * rng.uniform(0.3, 1.0, redeem.sum()), 0)
    keep = red_time < cal.epoch0 + cal.days * 86_400
    w.write(
        "bonus_transactions",
        {
            "customer_id": ids[np.concatenate([acc_cust, acc_cust[redeem][keep]])],
            "occurred_at": _ts(np.concatenate([acc_time, red_time[keep]])),
            "points": _money(np.concatenate([accrual, red_points[keep]])),
            "reason": np.concatenate([np.full(len(accrual), "purchase"), np.full(keep.sum(), "redemption")]),
        },
    )

    # Site and app events: activity follows buying, concentrated in the last two years.
    recent = max(0, cal.days - 730)
    activity = rng.poisson(1.0 + per_customer * 0.8)
    ev_cust = np.repeat(np.arange(n), activity)
    ev_day = cal.sample_after(rng, np.maximum(reg_day[ev_cust], recent))
    ev_type = np.array(vocab.EVENT_TYPES)[rng.choice(len(vocab.EVENT_TYPES), len(ev_cust), p=vocab.EVENT_SHARES)]
    ev_product = product_ids[rng.choice(len(price), len(ev_cust), p=popularity)]
    props = [
        json.dumps({"product_id": p}) if t in ("product_view", "cart_add") else None
        for t, p in zip(ev_type, ev_product, strict=True)
    ]
    w.write(
        "events",
        {
            "customer_id": ids[ev_cust],
            "occurred_at": _ts(cal.seconds(rng, ev_day, 0)),
            "event_type": ev_type,
            "channel": np.where(np.isin(ev_type, ["app_open", "push_subscribe"]), "app", "web"),
            "properties": props,
        },
    )

    # Messages sent over the last two years, with delivery, opens, clicks, complaints, unsubscribes.
    sent_count = rng.poisson(6.0, n)
    ms_cust = np.repeat(np.arange(n), sent_count)
    k = len(ms_cust)
    channel = np.array(["email", "sms", "push"])[np.searchsorted([0.6, 0.8], rng.random(k), side="right")]
    sent = cal.seconds(rng, cal.sample_after(rng, np.maximum(reg_day[ms_cust], recent)), 9)
    delivered = rng.random(k) < 0.95
    opened = delivered & (rng.random(k) < np.where(channel == "email", 0.3, 0.1))
    clicked = opened & (rng.random(k) < 0.3)
    complained = delivered & (channel == "email") & (rng.random(k) < 0.003)
    unsubscribed = delivered & (rng.random(k) < 0.006)

    def later(mask: np.ndarray, base: np.ndarray, max_hours: int) -> pa.Array:
        return _ts_masked(base + rng.integers(60, max_hours * 3600, k), ~mask)

    open_at = sent + rng.integers(300, 72 * 3600, k)  # some opens fall after the as-of day
    message_ids = np.array([f"M{i:011d}" for i in range(counters["messages"], counters["messages"] + k)])
    counters["messages"] += k
    campaigns = np.array(vocab.CAMPAIGNS)[rng.integers(0, len(vocab.CAMPAIGNS), k)]
    w.write(
        "messages",
        {
            "message_id": message_ids,
            "customer_id": ids[ms_cust],
            "campaign_id": campaigns,
            "channel": channel,
            "sent_at": _ts(sent),
            "delivered_at": later(delivered, sent, 1),
            "opened_at": _ts_masked(open_at, ~opened),
            "clicked_at": _ts_masked(open_at + rng.integers(5, 600, k), ~clicked),
            "complained_at": later(complained, open_at, 24),
            "unsubscribed_at": later(unsubscribed, sent, 48),
        },
    )

    # A quarter of the clicks lead to an order within two weeks: inside a 7-day attribution window or after
    # it (docs/analytics.md). Drawn last, so the rows above are those of earlier versions of the demo.
    buys = np.flatnonzero(clicked & (rng.random(k) < 0.25))
    click_at = open_at[buys] + 600  # no earlier than the click (at most 10 minutes after the open)
    bought = click_at + rng.integers(3600, 14 * 86_400, len(buys))
    keep = bought < cal.epoch0 + cal.days * 86_400  # by the end of the history
    buys, bought = buys[keep], bought[keep]
    b = len(buys)
    click_order_ids = np.array([f"O{i:010d}" for i in range(counters["orders"], counters["orders"] + b)])
    counters["orders"] += b
    product = rng.choice(len(price), b, p=popularity)
    w.write(
        "orders",
        {
            "order_id": click_order_ids,
            "customer_id": ids[ms_cust[buys]],
            "ordered_at": _ts(bought),
            "total_amount": _money(price[product]),
            "status": np.full(b, "completed"),
            "store_id": pa.array([None] * b, pa.string()),
            "channel": np.array(["web", "app"])[rng.integers(0, 2, b)],
        },
    )
    w.write(
        "order_lines",
        {"order_id": click_order_ids, "product_id": product_ids[product], "quantity": np.ones(b, np.int64),
         "price": _money(price[product])},
    )  # fmt: skip


def _ts_masked(seconds: np.ndarray, mask: np.ndarray) -> pa.Array:
    return pa.array(seconds.astype("datetime64[s]"), mask=mask)


def _bad_rows(rng, w: _Writer, summary: Summary, cal: _Calendar, customers: int) -> None:
    """Rows with exactly one problem each, appended after the good ones (a duplicate is the later row)."""
    day = cal.days // 2
    when = (datetime.combine(cal.start, datetime.min.time()) + timedelta(days=day, hours=12)).isoformat(sep=" ")
    some_customer = "C00000000"
    first_order = "O0000000000"
    plans: dict[str, list[tuple[str, dict[str, str | None]]]] = {
        "customers": [
            ("missing_key:customer_id", {"customer_id": None, "first_name": "NoKey"}),
            ("duplicate_key", {"customer_id": some_customer, "first_name": "Twin"}),
            ("unparseable_date:birth_date", {"customer_id": "CBAD-B{i}", "birth_date": "31.02.1990"}),
            ("unparseable_date:registered_at", {"customer_id": "CBAD-R{i}", "registered_at": "yesterday"}),
            ("unparseable_boolean:consent_email", {"customer_id": "CBAD-E{i}", "consent_email": "maybe"}),
        ],
        "products": [
            ("missing_key:product_id", {"product_id": None, "name": "Nameless"}),
            ("duplicate_key", {"product_id": "P000000", "name": "Twin product"}),
        ],
        "orders": [
            ("missing_key:order_id", {"order_id": None, "customer_id": some_customer}),
            ("missing_key:customer_id", {"order_id": "OBAD-C{i}", "customer_id": None}),
            ("unparseable_date:ordered_at", {"order_id": "OBAD-D{i}", "ordered_at": "2024-13-45"}),
            ("unparseable_number:total_amount", {"order_id": "OBAD-N{i}", "total_amount": "12,50 руб"}),
            ("negative_amount:total_amount", {"order_id": "OBAD-M{i}", "total_amount": "-120.00"}),
            ("unknown_status", {"order_id": "OBAD-S{i}", "status": "lost_in_post"}),
            ("orphan:customer_id", {"order_id": "OBAD-O{i}", "customer_id": "NO-SUCH-CUSTOMER"}),
            ("duplicate_key", {"order_id": first_order}),
        ],
        "order_lines": [
            ("missing_key:product_id", {"product_id": None}),
            ("orphan:order_id", {"order_id": "NO-SUCH-ORDER"}),
            ("orphan:product_id", {"product_id": "NO-SUCH-PRODUCT"}),
            ("unparseable_number:quantity", {"quantity": "two"}),
            ("negative_amount:price", {"price": "-9.99"}),
        ],
        "events": [
            ("missing_key:customer_id", {"customer_id": None}),
            ("unparseable_date:occurred_at", {"occurred_at": "not a time"}),
            ("orphan:customer_id", {"customer_id": "NO-SUCH-CUSTOMER"}),
        ],
        "messages": [
            ("unparseable_date:sent_at", {"message_id": "MBAD-D{i}", "sent_at": "32/01/2025"}),
            ("orphan:customer_id", {"message_id": "MBAD-O{i}", "customer_id": "NO-SUCH-CUSTOMER"}),
            ("duplicate_key", {"message_id": "M00000000000"}),
        ],
        "bonus_transactions": [
            ("unparseable_number:points", {"points": "lots"}),
            ("orphan:customer_id", {"customer_id": "NO-SUCH-CUSTOMER"}),
            ("unparseable_date:occurred_at", {"occurred_at": ""}),
        ],
    }
    base = {
        "customers": {"customer_id": "x", "registered_at": when},
        "products": {"product_id": "x", "name": "x", "category": vocab.CATEGORIES[0], "brand": vocab.BRANDS[0]},
        "orders": {
            "order_id": "x",
            "customer_id": some_customer,
            "ordered_at": when,
            "total_amount": "10.00",
            "status": "completed",
            "store_id": "S01",
            "channel": "web",
        },
        "order_lines": {"order_id": first_order, "product_id": "P000000", "quantity": "1", "price": "10.00"},
        "events": {"customer_id": some_customer, "occurred_at": when, "event_type": "site_visit", "channel": "web"},
        "messages": {
            "message_id": "x",
            "customer_id": some_customer,
            "campaign_id": vocab.CAMPAIGNS[0],
            "channel": "email",
            "sent_at": when,
        },
        "bonus_transactions": {
            "customer_id": some_customer,
            "occurred_at": when,
            "points": "10.00",
            "reason": "purchase",
        },
    }
    for name, plan in plans.items():
        good = summary.tables[name]
        per_reason = max(1, round(good * BAD_SHARE))
        rows: list[dict[str, str | None]] = []
        for reason, change in plan:
            for i in range(per_reason):
                row = dict(base[name])
                row.update({k: v.format(i=i) if isinstance(v, str) else v for k, v in change.items()})
                if name == "orders" and reason == "duplicate_key":
                    row["order_id"] = f"O{i:010d}"  # the i-th good order, repeated later in file order
                if name == "messages" and reason == "duplicate_key":
                    row["message_id"] = f"M{i:011d}"
                if name == "customers" and reason == "duplicate_key":
                    row["customer_id"] = f"C{i % customers:08d}"
                if name == "products" and reason == "duplicate_key":
                    row["product_id"] = f"P{i:06d}"
                rows.append(row)
            summary.bad_rows.setdefault(name, {})[reason] = per_reason
        columns = {c: pa.array([r.get(c) for r in rows], pa.string()) for c in _all_columns(rows)}
        w.write(name, columns)


def _all_columns(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r))
    return list(seen)


def generate(
    landing_dir: Path,
    customers: int = 20_000,
    seed: int = 42,
    fmt: str = "csv",
    end_date: date = DEFAULT_END,
    years: int = 5,
) -> dict:
    """Write a landing folder with every contract table; returns rows per table and the bad rows planted."""
    if customers < 1:
        raise ValueError("--customers must be at least 1")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"--format must be csv or parquet, got {fmt!r}")
    landing_dir = Path(landing_dir)
    for name in TABLES:  # a fresh snapshot: earlier demo files of these tables go
        for path in (landing_dir / name, landing_dir / f"{name}.csv", landing_dir / f"{name}.parquet"):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    landing_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    w = _Writer(landing_dir, fmt, summary)
    seeds = np.random.SeedSequence(seed)
    cal = _Calendar(end_date - timedelta(days=365 * years), end_date)
    product_rng = np.random.default_rng(seeds.spawn(1)[0])
    n_products = int(min(20_000, max(300, customers // 50)))
    product_columns, price, popularity = _products(product_rng, n_products)
    w.write("products", product_columns)
    products = (product_columns["product_id"], price, popularity)
    counters = {"orders": 0, "messages": 0}
    chunk_seeds = seeds.spawn(2 + (customers - 1) // CHUNK)
    for index, start in enumerate(range(0, customers, CHUNK)):
        rng = np.random.default_rng(chunk_seeds[index + 1])
        _chunk(rng, start, min(start + CHUNK, customers), cal, end_date, products, w, counters)
    _bad_rows(np.random.default_rng(chunk_seeds[0]), w, summary, cal, customers)
    # What was planted, for the docs and the tests: the loader must quarantine exactly these.
    (landing_dir / "_demo_summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    return summary.as_dict()
