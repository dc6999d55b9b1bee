"""Reading the features of any built day (dbt_project/models/marts/customer_features_history.sql).

`marts.customer_features` holds the day the last `dbt build` was for; every built day stays readable
through `marts.customer_features_on(day)`, which the history model creates. `features_on` picks the
cheapest of the two for a day and says which built day it read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from acrm_pipelines.sql import columns, table_exists

CURRENT = ("marts", "customer_features")
DATES = "marts.customer_features_dates"
READER = "marts.customer_features_on"
# A temp table, so that the segment engine scans a plain table whichever day it reads.
ON_DAY = ("temp", "acrm_features_on_day")


class FeaturesNotBuilt(LookupError):
    pass


@dataclass(frozen=True)
class Features:
    relation: tuple[str, str]  # (schema, table) holding one row per customer
    day: date  # the built day it holds: the latest one on or before the day asked for


def feature_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The columns of `marts.customer_features` as the DuckDB file has them (custom_* included): name → SQL
    type, in table order; empty before the first build."""
    return columns(con, *CURRENT)


def built_days(con: duckdb.DuckDBPyConnection) -> list[date]:
    """Every day whose features were built, oldest first (empty before the first build)."""
    if not table_exists(con, "marts", "customer_features_dates"):
        return []
    return [row[0] for row in con.execute(f"SELECT as_of FROM {DATES} ORDER BY as_of").fetchall()]


def current_day(con: duckdb.DuckDBPyConnection) -> date | None:
    """The day `marts.customer_features` is for (None before the first build)."""
    if not table_exists(con, *CURRENT):
        return None
    return con.execute("SELECT max(as_of) FROM marts.customer_features").fetchall()[0][0]  # read to its end


def day_to_read(con: duckdb.DuckDBPyConnection, day: date, *, exact: bool = False) -> date:
    """The built day whose features hold on `day`: the latest one on or before it, like memberships
    between evaluations; with `exact`, only `day` itself. Raises FeaturesNotBuilt, naming what was built."""
    current = current_day(con)
    if current == day:
        return day
    days = built_days(con)
    if not days:
        if current is None:
            raise FeaturesNotBuilt("no features are built yet: run `acrm run --as-of DATE` first")
        raise FeaturesNotBuilt(f"only the features of {current} are built (no history): run `acrm run --as-of {day}`")
    earlier = [d for d in days if d <= day]
    if not earlier or (exact and earlier[-1] != day):
        built = str(days[0]) if len(days) == 1 else f"{len(days)} days from {days[0]} to {days[-1]}"
        raise FeaturesNotBuilt(
            f"the features of {day} were not built (built: {built}): run `acrm run --as-of {day}` or `acrm backfill`"
        )
    return earlier[-1]


def features_on(con: duckdb.DuckDBPyConnection, day: date, *, exact: bool = False) -> Features:
    """The features as of `day` (see day_to_read): the current table when it holds that day, else a temp
    table read from the history."""
    read = day_to_read(con, day, exact=exact)
    if read == current_day(con):
        return Features(CURRENT, read)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {ON_DAY[1]} AS SELECT * FROM {READER}(?::DATE)", [read])
    return Features(ON_DAY, read)
