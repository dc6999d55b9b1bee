"""Where a journey's customers are: per step, those waiting there, sent, suppressed, converted (a completed order
within the campaign's attribution window after the send, as the analytics count it: docs/analytics.md) and
exited there; and per journey, entered and completed. Read by `acrm journeys status` and the assets' metadata."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from acrm_pipelines.journeys.facts import ORDERS
from acrm_pipelines.journeys.program import END, all_steps
from acrm_pipelines.journeys.spec import BranchStep, Journey
from acrm_pipelines.journeys.state import SCHEMA
from acrm_pipelines.sql import table_exists

COLUMNS = ("step", "waiting", "sent", "suppressed", "converted", "exited")


@dataclass(frozen=True)
class Summary:
    journey: str
    entered: int
    active: int
    completed: int
    exited: int
    steps: list[tuple]  # rows of COLUMNS, in step order


def branch_segments(journey: Journey) -> list[str]:
    return [s.branch.segment for _, _, s in all_steps(journey.steps) if isinstance(s, BranchStep)]


def by_step(con: duckdb.DuckDBPyConnection, key: str, attribution: dict | None = None) -> Summary:
    """`attribution`: analytics.attribution.attribution_vars (the windows by campaign, and the default)."""
    attribution = attribution or {"attribution_windows": {}, "attribution_default_hours": 7 * 24}
    _windows = pa.table(  # noqa: F841 - read by DuckDB through the variable name
        {
            "campaign": pa.array(list(attribution["attribution_windows"]), pa.string()),
            "hours": pa.array(list(attribution["attribution_windows"].values()), pa.int64()),
        }
    )
    if not table_exists(con, SCHEMA, "positions"):
        return Summary(key, 0, 0, 0, 0, [])
    entered, active, completed, exited = con.execute(
        f"""SELECT count(*), count(*) FILTER (status = 'active'), count(*) FILTER (status = 'completed'),
            count(*) FILTER (status = 'exited') FROM {SCHEMA}.positions WHERE journey = ?""",
        [key],
    ).fetchone()
    orders = (
        f"SELECT customer_id, ordered_at FROM {ORDERS} WHERE coalesce(status, 'completed') = 'completed'"
        if table_exists(con, *ORDERS.split("."))
        else "SELECT NULL::VARCHAR AS customer_id, NULL::TIMESTAMP AS ordered_at WHERE false"
    )
    rows = con.execute(
        f"""
        WITH s AS (
            SELECT node, count(*) FILTER (status IN ('pending', 'delivered')) AS sent,
                count(*) FILTER (status = 'suppressed') AS suppressed,
                count(*) FILTER (status = 'delivered' AND EXISTS (
                    SELECT 1 FROM ({orders}) o WHERE o.customer_id = x.customer_id
                    AND o.ordered_at > x.due_at
                    AND o.ordered_at <= x.due_at + to_hours(coalesce(w.hours, ?)))) AS converted
            FROM {SCHEMA}.sends x LEFT JOIN _windows w USING (campaign) WHERE journey = ? GROUP BY 1),
        p AS (
            SELECT node, count(*) FILTER (status = 'active') AS waiting, count(*) FILTER (status = 'exited') AS exited
            FROM {SCHEMA}.positions WHERE journey = ? GROUP BY 1)
        SELECT coalesce(s.node, p.node), coalesce(p.waiting, 0), coalesce(s.sent, 0), coalesce(s.suppressed, 0),
            coalesce(s.converted, 0), coalesce(p.exited, 0)
        FROM s FULL OUTER JOIN p ON s.node = p.node""",
        [attribution["attribution_default_hours"], key, key],
    ).fetchall()
    steps = sorted((r for r in rows if r[0] != END), key=lambda r: _order(r[0]))  # the end is `completed`
    return Summary(key, entered, active, completed, exited, steps)


def _order(node: str) -> tuple:
    """Steps in the order written: `2` < `3.yes.1` < `3.no.1` < `10`; own ids after them."""
    parts = node.split(".")
    if all(p.isdigit() or p in ("yes", "no") for p in parts):
        return (0, [int(p) if p.isdigit() else (0 if p == "yes" else 1) for p in parts])
    return (1, node)


def markdown(summary: Summary) -> str:
    head = (
        f"entered {summary.entered}, in the journey {summary.active}, completed {summary.completed}, "
        f"exited {summary.exited}\n\n"
    )
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in summary.steps]
    return head + "\n".join(lines)
