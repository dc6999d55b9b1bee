"""Tick journeys: plan, write, deliver (docs/journeys.md). The nightly asset ticks at the end of its day, the
sensor at the time it runs, `acrm journeys plan` plans without writing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from acrm_pipelines.exports.validate import ExportSet
from acrm_pipelines.journeys import engine, state
from acrm_pipelines.journeys.deliver import deliver_pending
from acrm_pipelines.journeys.facts import Facts
from acrm_pipelines.journeys.validate import JourneySet


@dataclass
class Ticked:
    key: str
    plan: engine.Plan
    delivered: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return self.plan.counts()


def plan(
    con: duckdb.DuckDBPyConnection, journeys: JourneySet, now: datetime, keys: Sequence[str] | None = None
) -> list[engine.Plan]:
    """What a tick at `now` would do, without writing anything."""
    facts = Facts(con)
    return [
        engine.plan(state.versions(con, journeys[k]), state.known(con, k), facts, now) for k in keys or journeys.keys
    ]


def tick(
    con: duckdb.DuckDBPyConnection,
    journeys: JourneySet,
    exports: ExportSet,
    now: datetime,
    outbox: Path,
    keys: Sequence[str] | None = None,
) -> list[Ticked]:
    """Advance each journey to `now` and deliver its pending sends (a killed tick's too)."""
    by_key = {k: exports[k] for k in exports.keys}
    out = []
    for key in keys or journeys.keys:
        journey = journeys[key]
        facts = Facts(con)
        planned = engine.plan(state.versions(con, journey), state.known(con, key), facts, now)
        state.apply(con, planned, journey, by_key, facts)
        out.append(Ticked(key, planned, deliver_pending(con, key, by_key, outbox)))
    return out
