"""`acrm report`: one self-contained HTML page of a day's campaign results (docs/analytics.md, "Report").

Plotly draws the charts; its JavaScript is inlined once, so the page opens without a network (personal
data never leaves, and a closed network shows it the same). A table the DuckDB file lacks, or a day it has no
rows for, is a sentence instead of a chart.
"""

from __future__ import annotations

import html
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

TOP_SEGMENTS = 20  # the largest ones over time; the portrait table has every segment
TOP_CAMPAIGNS = 15  # the campaign × channel rows reaching the most customers; the table has every one


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> pd.DataFrame:
    try:
        return con.execute(sql, params).df()
    except duckdb.CatalogException:  # the table is not built yet
        return pd.DataFrame()


def funnel_chart(con: duckdb.DuckDBPyConnection, as_of: date) -> go.Figure | None:
    df = _frame(con, "SELECT * FROM analytics.campaign_funnel WHERE as_of = ? ORDER BY campaign_id, channel", [as_of])
    if df.empty:
        return None
    total = len(df)
    df = df.nlargest(TOP_CAMPAIGNS, "sent").sort_values(["campaign_id", "channel"])
    labels = df.campaign_id + " · " + df.channel
    fig = go.Figure()
    for step in ("sent", "delivered", "opened", "clicked"):
        fig.add_bar(name=step, x=labels, y=df[step])
    fig.add_bar(name="customers ordering after a click", x=labels, y=df.conversion_after_click.fillna(0) * df.clicked)
    shown = f"the {len(df)} reaching the most customers, of {total}" if total > len(df) else f"all {total}"
    title = f"Funnel per campaign (customers; {shown})"
    return fig.update_layout(barmode="group", title=title, yaxis_title="customers")


def uplift_chart(con: duckdb.DuckDBPyConnection, as_of: date) -> go.Figure | None:
    df = _frame(con, "SELECT * FROM analytics.campaign_uplift WHERE as_of = ? ORDER BY export_key", [as_of])
    if df.empty:
        return None
    shown = df[df.uplift.notna()]
    fig = go.Figure(
        go.Scatter(
            x=shown.export_key,
            y=shown.uplift * 100,
            mode="markers",
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (shown.uplift_ci_high - shown.uplift) * 100,
                "arrayminus": (shown.uplift - shown.uplift_ci_low) * 100,
            },
            name="uplift",
        )
    )
    missing = ", ".join(df[df.uplift.isna()].export_key)
    title = "Conversion uplift, sent vs held back (points, 95 % interval)"
    title += f"<br><sub>not enough data: {missing}</sub>" if missing else ""
    fig.update_xaxes(type="category", categoryarray=list(df.export_key))  # every export, measured or not
    return fig.update_layout(title=title, yaxis_title="percentage points").add_hline(y=0, line_dash="dot")


def cohort_chart(con: duckdb.DuckDBPyConnection, as_of: date) -> go.Figure | None:
    df = _frame(con, "SELECT * FROM analytics.cohort_retention WHERE as_of = ?", [as_of])
    if df.empty:
        return None
    grid = df.pivot(index="cohort_month", columns="months_since", values="share").sort_index()
    fig = go.Figure(
        go.Heatmap(z=grid.values, x=list(grid.columns), y=[str(d)[:7] for d in grid.index], colorscale="Blues")
    )
    return fig.update_layout(title="Cohort retention (share active)", xaxis_title="months since the first order")


def rfm_chart(con: duckdb.DuckDBPyConnection, as_of: date) -> go.Figure | None:
    df = _frame(con, "SELECT * FROM analytics.rfm_migration WHERE as_of = ?", [as_of])
    if df.empty:
        return None
    grid = df.pivot_table(index="from_segment", columns="to_segment", values="customers", fill_value=0)
    fig = go.Figure(go.Heatmap(z=grid.values, x=list(grid.columns), y=list(grid.index), colorscale="Greens"))
    title = f"RFM migration, {df.from_day.iloc[0]:%Y-%m-%d} → {as_of} (customers)"
    return fig.update_layout(title=title, xaxis_title="to", yaxis_title="from")


def segments_chart(con: duckdb.DuckDBPyConnection, as_of: date) -> go.Figure | None:
    df = _frame(con, "SELECT segment_key, as_of, size FROM segments.evaluations WHERE as_of <= ?", [as_of])
    if df.empty:
        return None
    largest = df[df.as_of == df.as_of.max()].nlargest(TOP_SEGMENTS, "size").segment_key
    fig = go.Figure()
    for key, rows in df[df.segment_key.isin(largest)].sort_values("as_of").groupby("segment_key"):
        fig.add_scatter(x=rows.as_of, y=rows["size"], mode="lines+markers", name=key)
    return fig.update_layout(title=f"Segment size over time (the {TOP_SEGMENTS} largest)", yaxis_title="members")


CHARTS = [
    ("Campaign funnel", funnel_chart),
    ("Hold-out uplift", uplift_chart),
    ("Cohorts", cohort_chart),
    ("RFM migration", rfm_chart),
    ("Segments", segments_chart),
]


def write_report(con: duckdb.DuckDBPyConnection, as_of: date, path: Path) -> int:
    """Write the page; returns how many charts it has."""
    parts, charts = [], 0
    for title, chart in CHARTS:
        fig = chart(con, as_of)
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if fig is None:
            parts.append(f"<p>No data for {as_of}.</p>")
            continue
        # plotly.js inline with the first chart only: the page works offline and stays one file.
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=charts == 0, default_height="480px"))
        charts += 1
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ACRM report {as_of}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}</style></head>"
        f"<body><h1>ACRM report as of {as_of}</h1>{''.join(parts)}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return charts
