"""Benchmark: K generated segments over N customers, ours against one SQL query per segment.

    .venv/bin/python bench/segments.py --customers 1000000 --segments 1000

Builds synthetic marts (customer_features and the fact marts) straight in a DuckDB file, generates
segments of 1–3 field clauses, behaviour windows and set operations, then times two consecutive
partitions end to end (evaluate, diff against the previous partition, store history), and the naive
way: one query per segment (`acrm explain`'s SQL) on the same file. Prints a table, then one line:
`segments=K customers=N ours_s=… naive_s=… speedup=…x peak_mb=…`.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acrm_pipelines.segments.catalogue import load_catalogue  # noqa: E402
from acrm_pipelines.segments.compile import explain_sql  # noqa: E402
from acrm_pipelines.segments.evaluate import evaluate  # noqa: E402
from acrm_pipelines.segments.history import record  # noqa: E402
from acrm_pipelines.segments.validate import load_segments  # noqa: E402
from acrm_pipelines.settings import Settings  # noqa: E402

DAY1, DAY2 = date(2026, 11, 19), date(2026, 11, 20)
CITIES = ["Moscow", "Saint Petersburg", "Kazan", "Omsk", "Samara", "Almaty"]
CATEGORIES = ["Chinese tea", "Green tea", "Coffee", "Teaware", "Sweets", "Gifts"]


def build_marts(con: duckdb.DuckDBPyConnection, n: int, as_of: date) -> None:
    """Synthetic marts with the catalogue's column names; ~5 orders, 5 events, 3 messages per customer."""
    cities = "[" + ", ".join(f"'{c}'" for c in CITIES) + "]"
    cats = "[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    con.execute(f"""CREATE OR REPLACE TABLE marts.customer_features AS
        SELECT 'C' || lpad(i::VARCHAR, 9, '0') AS customer_id,
            DATE '{as_of}' AS as_of,
            {cities}[1 + (hash(i, 1) % {len(CITIES)})::INT] AS city,
            CASE WHEN hash(i, 2) % 2 = 0 THEN 'f' ELSE 'm' END AS gender,
            DATE '1950-01-01' + (hash(i, 3) % 20000)::INT AS birth_date,
            (18 + hash(i, 4) % 60)::INT AS age,
            (hash(i, 5) % 30)::INT AS orders_count,
            ((hash(i, 6) % 5000000) / 100.0)::DECIMAL(18, 2) AS total_amount,
            (hash(i, 7) % 2000)::INT AS recency_days,
            (1 + hash(i, 8) % 5)::INT AS rfm_r, (1 + hash(i, 9) % 5)::INT AS rfm_f,
            ((hash(i, 10) % 100000) / 10.0)::DECIMAL(18, 2) AS bonus_balance,
            hash(i, 11) % 3 > 0 AS consent_email,
            (hash(i, 12) % 10)::INT AS emails_opened_30d,
            {cats}[1 + (hash(i, 13) % {len(CATEGORIES)})::INT] AS favourite_category,
            CASE WHEN hash(i, 14) % 10 = 0 THEN ['vip'] ELSE [] END::VARCHAR[] AS tags
        FROM range({n}) t(i)""")
    con.execute(f"""CREATE OR REPLACE TABLE marts.fct_orders AS
        SELECT 'O' || i AS order_id, 'C' || lpad((hash(i, 20) % {n})::VARCHAR, 9, '0') AS customer_id,
            TIMESTAMP '{as_of}' - INTERVAL (hash(i, 21) % (3 * 365 * 86400)) SECOND + INTERVAL 1 DAY
                - INTERVAL 1 SECOND AS ordered_at,
            ((hash(i, 22) % 1000000) / 100.0)::DECIMAL(18, 2) AS total_amount,
            CASE WHEN hash(i, 23) % 10 = 0 THEN 'cancelled' ELSE 'completed' END AS status,
            'S' || (hash(i, 24) % 30) AS store_id, 'web' AS channel
        FROM range({5 * n}) t(i)""")
    con.execute(f"""CREATE OR REPLACE TABLE marts.fct_order_lines AS
        SELECT order_id, customer_id, ordered_at, status, store_id, channel,
            'P' || (hash(order_id) % 500) AS product_id,
            NULL::VARCHAR AS product_name, {cats}[1 + (hash(order_id, 1) % {len(CATEGORIES)})::INT] AS category,
            'brand' AS brand, 1::BIGINT AS quantity, total_amount AS price, total_amount AS line_amount
        FROM marts.fct_orders""")
    con.execute(f"""CREATE OR REPLACE TABLE marts.fct_events AS
        SELECT 'C' || lpad((hash(i, 30) % {n})::VARCHAR, 9, '0') AS customer_id,
            TIMESTAMP '{as_of}' - INTERVAL (hash(i, 31) % (365 * 86400)) SECOND + INTERVAL 1 DAY
                - INTERVAL 1 SECOND AS occurred_at,
            ['site_visit', 'product_view', 'cart_add', 'app_open'][1 + (hash(i, 32) % 4)::INT] AS event_type,
            'web' AS channel, NULL::VARCHAR AS properties
        FROM range({5 * n}) t(i)""")
    con.execute(f"""CREATE OR REPLACE TABLE marts.fct_messages AS
        SELECT 'M' || i AS message_id, 'C' || lpad((hash(i, 40) % {n})::VARCHAR, 9, '0') AS customer_id,
            'camp-' || (hash(i, 41) % 20) AS campaign_id,
            ['email', 'sms', 'push'][1 + (hash(i, 42) % 3)::INT] AS channel,
            TIMESTAMP '{as_of}' - INTERVAL (hash(i, 43) % (365 * 86400)) SECOND AS sent_at,
            NULL::TIMESTAMP AS delivered_at,
            CASE WHEN hash(i, 44) % 4 = 0 THEN TIMESTAMP '{as_of}' - INTERVAL (hash(i, 43) % (365 * 86400)) SECOND
                + INTERVAL 1 HOUR END AS opened_at,
            NULL::TIMESTAMP AS clicked_at, NULL::TIMESTAMP AS complained_at, NULL::TIMESTAMP AS unsubscribed_at
        FROM range({3 * n}) t(i)""")
    con.execute(
        "CREATE OR REPLACE TABLE marts.fct_bonus_transactions AS "
        "SELECT customer_id, ordered_at AS occurred_at, total_amount / 20 AS points, 'purchase' AS reason "
        "FROM marts.fct_orders"
    )


def field_clause(rng: random.Random) -> dict:
    kind = rng.randrange(8)
    if kind == 0:
        return {"field": "total_amount", "op": ">=", "value": rng.randrange(0, 50000)}
    if kind == 1:
        lo = rng.randrange(0, 1500)
        return {"field": "recency_days", "op": "between", "value": [lo, lo + rng.randrange(30, 500)]}
    if kind == 2:
        return {"field": "city", "op": rng.choice(["in", "not_in"]), "value": rng.sample(CITIES, 2)}
    if kind == 3:
        return {"field": "orders_count", "op": rng.choice([">", "<=", "="]), "value": rng.randrange(0, 30)}
    if kind == 4:
        return {"field": "consent_email", "op": "=", "value": rng.random() < 0.7}
    if kind == 5:
        return {"field": "age", "op": "between", "value": sorted(rng.sample(range(18, 78), 2))}
    if kind == 6:
        return {
            "field": "birth_date",
            "op": "between",
            "value": ["today", f"+{rng.randrange(1, 30)}d"],
            "ignore_year": True,
        }
    return {"field": "favourite_category", "op": "=", "value": rng.choice(CATEGORIES)}


def behaviour_clause(rng: random.Random) -> dict:
    kind = rng.randrange(4)
    window = rng.choice(["7d", "30d", "90d", "3M", "1y"])
    if kind == 0:
        return {"purchase": {}, "within": window, "count": {rng.choice([">=", "="]): rng.randrange(0, 3)}}
    if kind == 1:
        return {
            "purchase": {"category": [rng.choice(CATEGORIES)]},
            "within": window,
            "sum_amount": {">=": rng.randrange(100, 5000)},
        }
    if kind == 2:
        return {"event": rng.choice(["site_visit", "cart_add"]), "within": window, "count": {">=": rng.randrange(1, 4)}}
    return {"message": {"channel": ["email"], "action": "opened"}, "within": window, "count": {">=": 1}}


def generate_segments(k: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []
    for i in range(k):
        key = f"s{i:05d}"
        roll = rng.random()
        if roll < 0.15 and i >= 10:
            refs = rng.sample([s["key"] for s in out if "rules" in s], 3)
            op = rng.choice(["union", "intersect", "minus"])
            source = (
                {"union": refs[:2]}
                if op == "union"
                else {"intersect": refs[:2]}
                if op == "intersect"
                else {"union": refs[:2], "minus": refs[2:]}
            )
            out.append({"key": key, "from": source})
            continue
        clauses = [field_clause(rng) for _ in range(rng.randint(1, 3))]
        if roll < 0.35:
            clauses[-1] = behaviour_clause(rng)
        rules = clauses[0] if len(clauses) == 1 else {rng.choice(["all", "any"]): clauses}
        out.append({"key": key, "rules": rules})
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=1_000)
    parser.add_argument(
        "--naive-limit",
        type=int,
        default=0,
        help="time the naive way on only this many segments and extrapolate (0 = all)",
    )
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        con = duckdb.connect(str(db), config=Settings.from_env().duckdb_config())
        t = time.perf_counter()
        build_marts(con, args.customers, DAY1)
        rows.append(("build synthetic marts", time.perf_counter() - t, ""))
        folder = Path(tmp) / "segments"
        folder.mkdir()
        (folder / "bench.yaml").write_text(yaml.safe_dump_all(generate_segments(args.segments), sort_keys=False))
        t = time.perf_counter()
        catalogue = load_catalogue()
        segments = load_segments([folder], catalogue)
        rows.append(("load + validate definitions", time.perf_counter() - t, f"{len(segments)} segments"))
        versions = {k: segments[k].version() for k in segments.order}

        timings = {}
        for label, day in (("partition 1 (everyone enters)", DAY1), ("partition 2 (diff vs 1)", DAY2)):
            t = time.perf_counter()
            result = evaluate(con, segments, day)
            t_eval = time.perf_counter() - t
            recorded = record(con, result, segments.order, versions)
            total = time.perf_counter() - t
            timings[day] = (t_eval, total)
            changes = sum(r.entered + r.exited for r in recorded.values())
            detail = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items() if k != "total_s")
            rows.append((f"{label}: evaluate", t_eval, detail))
            rows.append((f"{label}: diff + store history", total - t_eval, f"{changes:,} entries+exits"))
        members = sum(result.size(k) for k in segments.order)
        history_rows = con.execute("SELECT count(*) FROM segments.membership").fetchone()[0]
        rows.append(("membership rows stored", 0.0, f"{history_rows:,} (members on day 2: {members:,})"))

        keys = segments.order[: args.naive_limit] if args.naive_limit else segments.order
        t = time.perf_counter()
        for key in keys:
            con.execute(explain_sql(key, segments, catalogue, DAY2)).fetchall()
        naive = (time.perf_counter() - t) * len(segments.order) / len(keys)
        note = "" if len(keys) == len(segments.order) else f"extrapolated from {len(keys)} segments"
        rows.append(("naive: one query per segment", naive, note))
        con.close()

    ours = timings[DAY2][1]
    print(f"\n{'stage':<44}{'seconds':>10}  notes")
    for name, secs, note in rows:
        print(f"{name:<44}{secs:>10.2f}  {note}")
    print(
        f"segments={len(segments)} customers={args.customers} ours_s={ours:.2f} naive_s={naive:.2f} "
        f"speedup={naive / ours:.1f}x peak_mb={peak_mb():.0f}"
    )


if __name__ == "__main__":
    main()
