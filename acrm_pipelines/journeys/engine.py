"""A journey tick: take the new entries, move every customer along their steps up to `now`, and say what to
send. `plan` decides without writing (`acrm journeys plan` shows it); `state.apply` writes it.

Each customer is walked through time in order: their position's next step acts at a moment computed from
the data (a send at the first allowed local hour, a wait at its end, a wait_until at the event or its
deadline, a branch at once), an exit (an event, or a day in the exit segment) ends the position when it
comes first, and an entry is taken only when the customer is not in the journey at that moment and the
re-entry rule allows it. So the outcome depends on the data and on `now`, not on how often ticks run:
two ticks at 12:00 and 18:00 do what one at 18:00 does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from acrm_pipelines.journeys.facts import Facts, cutoff, known_day
from acrm_pipelines.journeys.program import END, Node, Program, all_steps, compile_journey
from acrm_pipelines.journeys.quiet_hours import next_allowed, zone_of
from acrm_pipelines.journeys.spec import BranchStep, Journey, SendStep, WaitStep, WaitUntilStep

# Event entries are looked for this far back at each tick, so that events loaded late still enter (an
# event already taken, or older than the customer's latest entry, is not taken again).
EVENT_LOOKBACK = timedelta(days=1)


@dataclass
class Position:
    journey: str
    version: str
    customer_id: str
    entry_no: int
    entered_at: datetime
    node: str
    node_at: datetime  # when the customer reached the node
    status: str = "active"  # active | completed | exited
    ended_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Send:
    key: str  # the idempotency key: (journey, version, customer, entry, step)
    journey: str
    version: str
    customer_id: str
    entry_no: int
    node: str
    export_key: str
    due_at: datetime


@dataclass(frozen=True)
class Step:
    """One thing that happened to one customer: entered, sent, yes, no, exited, completed."""

    journey: str
    version: str
    customer_id: str
    entry_no: int
    happened_at: datetime
    node: str
    what: str
    detail: str | None = None


@dataclass
class Plan:
    journey: str
    now: datetime
    positions: list[Position] = field(default_factory=list)  # new or changed
    sends: list[Send] = field(default_factory=list)
    log: list[Step] = field(default_factory=list)
    segment_day: date | None = None  # the latest segment day taken (the next tick starts after it)
    skipped: str | None = None  # why nothing was done

    def counts(self) -> dict[str, int]:
        """How many of each thing happened: entered, sent, yes, no, exited, completed."""
        out: dict[str, int] = {}
        for step in self.log:
            out[step.what] = out.get(step.what, 0) + 1
        return out


def send_key(journey: str, version: str, customer_id: str, entered_at: datetime, node: str) -> str:
    text = "|".join([journey, version, customer_id, entered_at.isoformat(), node])
    return f"{journey}:{hashlib.sha256(text.encode()).hexdigest()[:24]}"


@dataclass
class Versions:
    """The journey's current definition and the earlier ones customers are still on."""

    current: Journey
    by_version: dict[str, Journey]
    programs: dict[str, Program] = field(default_factory=dict)

    def journey(self, version: str) -> Journey:
        return self.by_version[version]

    def program(self, version: str) -> Program:
        if version not in self.programs:
            self.programs[version] = compile_journey(self.by_version[version])
        return self.programs[version]


class _Walk:
    """Moves one journey's customers through time (see the module's docstring)."""

    def __init__(self, versions: Versions, facts: Facts, now: datetime, zones: dict[str, str | None], plan: Plan):
        self.v, self.facts, self.now, self.zones, self.plan = versions, facts, now, zones, plan
        self.events: dict[str, list[tuple[datetime, str]]] = {}

    def zone(self, journey: Journey, customer_id: str) -> ZoneInfo:
        return zone_of(self.zones.get(customer_id), ZoneInfo(journey.timezone))

    def log(self, pos: Position, at: datetime, what: str, detail: str | None = None) -> None:
        self.plan.log.append(Step(pos.journey, pos.version, pos.customer_id, pos.entry_no, at, pos.node, what, detail))

    def first_event(self, customer_id: str, kinds: set[str], after: datetime, until: datetime) -> datetime | None:
        for at, kind in self.events.get(customer_id, []):
            if after < at <= until and kind in kinds:
                return at
        return None

    def exit_time(self, pos: Position, journey: Journey, until: datetime) -> tuple[datetime, str] | None:
        """The first exit after entering, up to `until`: an exit event, or a known day in an exit segment."""
        found: list[tuple[datetime, str]] = []
        kinds = {e.event for e in journey.exit_when if e.event}
        at = self.first_event(pos.customer_id, kinds, pos.entered_at, until) if kinds else None
        if at is not None:
            kind = next(k for t, k in self.events[pos.customer_id] if t == at and k in kinds)
            found.append((at, f"event {kind}"))
        for rule in journey.exit_when:
            if rule.segment is None:
                continue
            days = self.facts.evaluated_days(rule.segment)
            last = known_day(until)
            day = pos.entered_at.date()  # the first day whose cut-off comes after entering
            while day <= last and days and day <= days[-1]:
                if day >= days[0] and pos.customer_id in self.facts.members(rule.segment, day):
                    found.append((cutoff(day), f"segment {rule.segment}"))
                    break
                day += timedelta(days=1)
        return min(found) if found else None

    def action(self, pos: Position, node: Node, journey: Journey, until: datetime) -> tuple[datetime, str | None]:
        """When the node acts, and the way it takes (`yes`/`no` for a wait_until) when it is known."""
        step = node.step
        if isinstance(step, SendStep):
            zone = self.zone(journey, pos.customer_id)
            return next_allowed(pos.node_at, zone, journey.send_between, journey.send_on), None
        if isinstance(step, WaitStep):
            return pos.node_at + step.wait, None
        if isinstance(step, WaitUntilStep):
            deadline = pos.node_at + step.wait_until.within
            at = self.first_event(pos.customer_id, {step.wait_until.event}, pos.node_at, min(deadline, until))
            return (at, "yes") if at is not None else (deadline, "no")
        return pos.node_at, None  # a branch, or the end

    def run(self, pos: Position, until: datetime) -> None:
        """Act every step due up to `until` (an exit first when it comes first)."""
        journey, program = self.v.journey(pos.version), self.v.program(pos.version)
        while pos.status == "active":
            node = program[pos.node]
            at, way = self.action(pos, node, journey, until)
            exit_at = self.exit_time(pos, journey, min(at, until))
            if exit_at is not None:
                pos.status, pos.ended_at, pos.reason = "exited", exit_at[0], exit_at[1]
                self.log(pos, exit_at[0], "exited", exit_at[1])
                return
            if at > until:
                return
            self.act(pos, node, journey, at, way)

    def act(self, pos: Position, node: Node, journey: Journey, at: datetime, way: str | None) -> None:
        step = node.step
        if node.id == END:
            pos.status, pos.ended_at = "completed", at
            self.log(pos, at, "completed")
            return
        if isinstance(step, SendStep):
            key = send_key(pos.journey, pos.version, pos.customer_id, pos.entered_at, node.id)
            self.plan.sends.append(
                Send(key, pos.journey, pos.version, pos.customer_id, pos.entry_no, node.id, step.send, at)
            )
            self.log(pos, at, "sent", step.send)
            target = node.next
        elif isinstance(step, WaitStep):
            target = node.next
        elif isinstance(step, WaitUntilStep):
            self.log(pos, at, way or "no", step.wait_until.event)
            target = node.yes if way == "yes" else node.no
        else:
            assert isinstance(step, BranchStep)
            inside = pos.customer_id in self.facts.members(step.branch.segment, known_day(at))
            self.log(pos, at, "yes" if inside else "no", step.branch.segment)
            target = node.yes if inside else node.no
        pos.node, pos.node_at = target, at


@dataclass
class Known:
    """What the state says of the journey's customers."""

    active: dict[str, Position]  # customer_id -> their position in flight
    latest: dict[str, tuple[int, datetime]]  # customer_id -> (latest entry number, when)
    ticked_at: datetime | None
    segment_day: date | None


def plan(versions: Versions, known: Known, facts: Facts, now: datetime) -> Plan:
    """What a tick at `now` does for one journey (nothing for a `now` at or before the last tick's)."""
    journey = versions.current
    out = Plan(journey.key, now, segment_day=known.segment_day)
    if known.ticked_at is not None and now <= known.ticked_at:
        out.skipped = f"already ticked up to {known.ticked_at}"
        return out
    entries = _entries(journey, known, facts, now, out) if journey.active else {}
    customers = sorted(set(known.active) | set(entries))
    walk = _Walk(versions, facts, now, facts.timezones(customers), out)
    kinds = {e.event for e in journey.exit_when if e.event}
    for version in {journey.version, *(p.version for p in known.active.values())}:
        v = versions.journey(version)
        kinds |= {e.event for e in v.exit_when if e.event}
        kinds |= {s.wait_until.event for _, _, s in _steps(v) if isinstance(s, WaitUntilStep)}
    since = min([p.entered_at for p in known.active.values()] + [t for ts in entries.values() for t in ts] + [now])
    for customer_id, at, kind in facts.events(kinds, since, now, customers):
        walk.events.setdefault(customer_id, []).append((at, kind))
    for customer_id in customers:
        pos = known.active.get(customer_id)
        before = replace(pos) if pos else None
        number, last_at = known.latest.get(customer_id, (0, None))
        for at in entries.get(customer_id, []):
            if pos is not None and pos.status == "active":
                walk.run(pos, at)
                if pos.status == "active":
                    continue  # in the journey at that moment
                out.positions.append(pos)
            if last_at is not None and (journey.reentry == "never" or at < last_at + journey.reentry.after):
                continue
            number, last_at = number + 1, at
            first = versions.program(journey.version).first
            pos = Position(journey.key, journey.version, customer_id, number, at, first, at)
            walk.log(pos, at, "entered")
        if pos is not None:
            walk.run(pos, now)
            if pos != before and pos not in out.positions:
                out.positions.append(pos)
    return out


def _steps(journey: Journey):
    return all_steps(journey.steps)


def _entries(journey: Journey, known: Known, facts: Facts, now: datetime, out: Plan) -> dict[str, list[datetime]]:
    """customer_id -> the moments they would enter, oldest first (after their latest entry)."""
    found: dict[str, list[datetime]] = {}
    entry = journey.on
    first_day = journey.starts
    if entry.event:
        after = now - EVENT_LOOKBACK
        if first_day is not None:
            after = max(after, datetime.combine(first_day, datetime.min.time()) - timedelta(microseconds=1))
        for customer_id, at, _ in facts.events([entry.event], after, now):
            found.setdefault(customer_id, []).append(at)
    else:
        days = _segment_days(journey, known, facts, now)
        for day in days:
            for customer_id in facts.segment_entries(entry, day):
                found.setdefault(customer_id, []).append(cutoff(day))
        if days:
            out.segment_day = days[-1]
    for customer_id, moments in found.items():
        latest = known.latest.get(customer_id, (0, None))[1]
        found[customer_id] = sorted({t for t in moments if latest is None or t > latest})
    return {c: ts for c, ts in found.items() if ts}


def _segment_days(journey: Journey, known: Known, facts: Facts, now: datetime) -> list[date]:
    """The change days of the entry's segments not taken yet. A journey's first tick takes only the latest
    known day: it starts now, not with the segment's past."""
    keys = journey.on.segments
    days = sorted(set.intersection(*(set(facts.change_days(k, known.segment_day, now)) for k in keys)))
    if journey.starts is not None:
        days = [d for d in days if d >= journey.starts]
    if known.segment_day is None:
        days = days[-1:]
    return days
