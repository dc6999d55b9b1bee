"""SIGKILL at chosen and random points of journey ticks: no send is doubled and none is missed.

The scenario: 300 customers enter the segment `newcomers` on one day and 100 more the next, so the journey
`welcome` (send welcome_a, wait 1h, send welcome_b) sends hundreds of rows in four ticks; the event journey
`cart` (send cart_push, then cart_email unless a purchase comes within 3h) sends in every tick too. Each tick
delivers three export groups (one CSV file each), in two journeys, each with its own plan, apply transaction
and delivery. The ticks run at the end of day 2, 6h later, the end of day 3 and 6h later.

The reference runs the four ticks uninterrupted, in-process, counting the DuckDB statements of each tick
(tests/crash_journey.py's `Counting`). Then series of crashed runs: for each tick moment the test starts
`python -m tests.crash_journey` on a copy of the prepared DuckDB file, and the process SIGKILLs itself
- after a statement of planning (the reads of segments, events, features, the stored state; the DDL);
- after a statement inside apply's transaction (BEGIN ... the inserts of positions, log, sends, tick);
- right after its COMMIT (decided, not delivered);
- after a statement of delivery (the pending groups read, a group's rows read but not written, a group
  marked delivered: between export groups and between journeys);
- after the k-th file is written and before its sends are marked delivered (write_delivered returned);
- inside the k-th file write (the temporary file written, not renamed into place);
- at a random moment (a timer in the process: anywhere, closing the DuckDB file included).
Some killed ticks are killed a second time while resuming. Then the tick is run again to completion,
in-process (a resumed run), and the series goes on to the next tick moment.

After every kill no send key is in two files (or twice in one), each file holds exactly its group's decided
sends, and every send marked delivered is in its file. After every series the state (sends with their rows
and statuses: all delivered but those the channel rules suppress; positions; log; ticks; versions) and the
outbox files (names and bytes) equal the reference's. Equal files mean each send went out once: every key
is in exactly one file, and each file is its group's sends, all of them. A kill inside a write leaves its
temporary file (`.<name>.<random>.tmp`: write_atomically's cleanup does not run on SIGKILL); the next
delivery removes it, so none is left after a series.

The first tick of a file killed inside `state.ensure` (its tables created in one transaction) is killed
at every statement of it in the last test: before the fix, a kill between creating `journeys.positions`
and `journeys.ticks` left every later tick failing.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.csv as pacsv
import pytest

from acrm_pipelines.exports.validate import load_exports
from acrm_pipelines.journeys import run
from acrm_pipelines.journeys.validate import load_journeys
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import load_segments
from tests.crash_journey import KILL, Counting

ROOT = Path(__file__).resolve().parent.parent
SEED = 20260303

SEGMENTS = 'key: newcomers\nrules: {field: city, op: "=", value: new}\n'
JOURNEYS = """\
key: welcome
on: {entered: newcomers}
steps:
  - send: welcome_a
  - wait: 1h
  - send: welcome_b
---
key: cart
on: {event: cart_abandon}
steps:
  - send: cart_push
  - wait_until: {event: purchase, within: 3h}
    no:
      - send: cart_email
"""
EMAIL = {"customer_id": "customer_id", "email": "email", "first_name": "first_name"}
EXPORTS = [
    {"key": "welcome_a", "channel": "email", "campaign": "welcome", "fields": EMAIL},
    {"key": "welcome_b", "channel": "email", "campaign": "welcome", "fields": EMAIL},
    {"key": "cart_push", "channel": "push", "campaign": "cart"},
    {"key": "cart_email", "channel": "email", "campaign": "cart", "fields": EMAIL},
]
D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
TICKS = [datetime(2026, 3, 3, 0), datetime(2026, 3, 3, 6), datetime(2026, 3, 4, 0), datetime(2026, 3, 4, 6)]
CUSTOMERS = [f"c{i:04d}" for i in range(400)]
NEW_ON = {D1: 0, D2: 300, D3: 400}  # the first n customers are `new` from that day


def _features(day: date) -> list[dict]:
    return [
        {
            "customer_id": c, "city": "new" if i < NEW_ON[day] else "old", "email": f"{c}@example.com",
            "first_name": f"Name {i}", "consent_email": i % 17 != 5, "consent_push": i % 13 != 7,
        }
        for i, c in enumerate(CUSTOMERS)
    ]  # fmt: skip


def _events() -> tuple[list[tuple], list[tuple]]:
    """Cart abandons every 19 minutes from 03-02 01:00 to 03-04 00:30 (some twice); some buy within 3h."""
    events, orders = [], []
    for i in range(150):
        customer, at = CUSTOMERS[(i * 7) % 400], datetime(2026, 3, 2, 1) + i * timedelta(minutes=19)
        events.append((customer, at, "cart_abandon"))
        if i % 10 == 3:
            events.append((customer, at + timedelta(hours=2), "cart_abandon"))  # in the journey then: not taken
        if i % 4 == 1:
            orders.append((f"o{i}", customer, at + timedelta(hours=1), "completed"))
        elif i % 4 == 2:
            orders.append((f"o{i}", customer, at + timedelta(hours=5), "completed"))
    return events, orders


@pytest.fixture(scope="module")
def base(tmp_path_factory, set_features, segment_set, record_segments, export_set) -> Path:
    """A folder with base.duckdb (features, segments recorded on D1-D3, events, orders) and the YAML folders."""
    tmp = tmp_path_factory.mktemp("journeys_crash")
    con = duckdb.connect(str(tmp / "base.duckdb"))
    segments = segment_set(tmp, SEGMENTS)
    export_set(tmp, [{**e, "destination": {"type": "csv"}} for e in EXPORTS], segments)
    (tmp / "journeys").mkdir()
    (tmp / "journeys" / "j.yaml").write_text(JOURNEYS)
    for day in (D1, D2, D3):
        set_features(con, _features(day))
        record_segments(con, segments, day)
    events, orders = _events()
    con.execute("CREATE SCHEMA staging")
    con.execute("CREATE TABLE staging.stg_crm__events (customer_id VARCHAR, occurred_at TIMESTAMP, event_type VARCHAR)")
    con.executemany("INSERT INTO staging.stg_crm__events VALUES (?, ?, ?)", events)
    con.execute(
        "CREATE TABLE staging.stg_crm__orders (order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, "
        "status VARCHAR)"
    )
    con.executemany("INSERT INTO staging.stg_crm__orders VALUES (?, ?, ?, ?)", orders)
    con.close()
    return tmp


def _definitions(tmp: Path):
    """The journeys and exports as the subprocess loads them (the same YAML)."""
    catalogue = load_catalogue()
    segments = load_segments([tmp / "segments"], catalogue)
    exports = load_exports([tmp / "exports"], segments, catalogue)
    return load_journeys([tmp / "journeys"], segments, exports), exports


def _copy(src: Path, dst: Path) -> None:
    shutil.copy(src, dst)
    if Path(f"{src}.segment-state").exists():
        shutil.copytree(f"{src}.segment-state", f"{dst}.segment-state")


@dataclass
class Outcome:
    tables: dict[str, list]
    files: dict[str, bytes]  # path below the outbox -> content


def _outcome(db: Path, outbox: Path) -> Outcome:
    with duckdb.connect(str(db), read_only=True) as con:
        root = f"{outbox.resolve()}/"
        tables = {
            "sends": con.execute(
                "SELECT * EXCLUDE (delivered_at, location), replace(location, ?, '') FROM journeys.sends ORDER BY ALL",
                [root],
            ).fetchall(),
            "positions": con.execute("SELECT * FROM journeys.positions ORDER BY ALL").fetchall(),
            "log": con.execute("SELECT * FROM journeys.log ORDER BY ALL").fetchall(),
            "ticks": con.execute("SELECT * FROM journeys.ticks ORDER BY ALL").fetchall(),
            "versions": con.execute("SELECT * FROM journeys.versions ORDER BY ALL").fetchall(),
        }
    files = {p.relative_to(outbox).as_posix(): p.read_bytes() for p in sorted(outbox.rglob("*.csv"))}
    return Outcome(tables, files)


@dataclass
class Reference:
    outcome: Outcome
    statements: list[list[str]]  # per tick, the text of each statement
    writes: list[int]  # per tick, the files written
    seconds: list[float]  # per tick, how long it took in-process


@pytest.fixture(scope="module")
def reference(base: Path, tmp_path_factory) -> Reference:
    tmp = tmp_path_factory.mktemp("reference")
    db, outbox = tmp / "db.duckdb", tmp / "outbox"
    _copy(base / "base.duckdb", db)
    journeys, exports = _definitions(base)
    statements, writes, seconds = [], [], []
    with duckdb.connect(str(db)) as con:
        for now in TICKS:
            counting, files, start = Counting(con), len(list(outbox.rglob("*.csv"))), time.perf_counter()
            run.tick(counting, journeys, exports, now, outbox)
            seconds.append(time.perf_counter() - start)
            statements.append(counting.statements)
            writes.append(len(list(outbox.rglob("*.csv"))) - files)
    return Reference(_outcome(db, outbox), statements, writes, seconds)


# --- where to kill ------------------------------------------------------------------------------------------


def _phases(statements: list[str]) -> list[str]:
    """The phase of each statement of a tick: plan (reads before a journey's transaction), apply (BEGIN and the
    statements after it inside the transaction), commit, ensure (state.ensure's transaction of CREATEs, before
    apply and before delivery), deliver (the pending groups read, a group's rows read, a group marked)."""
    out, phase, ensuring = [], "plan", False
    for i, text in enumerate(statements):
        following = statements[i + 1] if i + 1 < len(statements) else ""
        if text.startswith("BEGIN") and following.startswith("CREATE"):
            ensuring = True
        if ensuring:
            out.append("ensure")
            ensuring = not text.startswith(("COMMIT", "ROLLBACK"))
            continue
        if text.startswith("BEGIN"):
            phase = "apply"
        elif text.startswith("COMMIT"):
            out.append("commit")
            phase = "deliver"
            continue
        elif phase == "deliver" and "journeys.sends" not in text:
            phase = "plan"  # the next journey's first read
        out.append(phase)
    return out


def _inside_first_ensure(reference: Reference) -> set[tuple[int, int]]:
    """(tick, statement) between creating journeys.positions and journeys.ticks (inside state.ensure)."""
    out, positions, ticks = set(), False, False
    for tick, statements in enumerate(reference.statements):
        for n, text in enumerate(statements, 1):
            positions |= text.startswith("CREATE TABLE IF NOT EXISTS journeys.positions")
            ticks |= text.startswith("CREATE TABLE IF NOT EXISTS journeys.ticks")
            if positions and not ticks:
                out.add((tick, n))
    return out


def _kill_plan(reference: Reference, rng: random.Random) -> list[dict[int, list[str]]]:
    """Series of kills, each a tick -> where its run is killed, and (about a third) where its resumed run is
    killed again. Per tick: after a statement of each phase, after a file written, inside a file write; six
    at random moments (after the first tick), which may also come
    after the tick's end."""
    queues: dict[int, list[str]] = {}
    for tick, statements in enumerate(reference.statements):
        phases = _phases(statements)
        specs = []
        for phase in ("plan", "apply", "commit", "deliver"):
            points = [n for n, p in enumerate(phases, 1) if p == phase]
            specs.append(f"stmt:{rng.choice(points)}")
        specs += [f"write:{rng.randint(1, reference.writes[tick])}", f"tmp:{rng.randint(1, reference.writes[tick])}"]
        queues[tick] = specs
    for _ in range(6):
        tick = rng.randrange(1, len(TICKS))
        queues[tick].append(f"delay:{rng.uniform(0.0, 1.5 * reference.seconds[tick]):.3f}")
    for specs in queues.values():
        rng.shuffle(specs)
    plan = []
    for i in range(max(len(s) for s in queues.values())):
        series = {}
        for tick, specs in queues.items():
            if i < len(specs):
                again = [f"stmt:{rng.randint(1, len(reference.statements[tick]))}", "write:1", "tmp:1"]
                series[tick] = [specs[i], *([rng.choice(again)] if rng.random() < 0.3 else [])]
        plan.append(series)
    return plan


# --- the runs -----------------------------------------------------------------------------------------------


def _run_killed(base: Path, db: Path, outbox: Path, now: datetime, spec: str) -> subprocess.CompletedProcess:
    args = [
        sys.executable, "-m", "tests.crash_journey", str(db), str(outbox), str(base / "journeys"),
        str(base / "segments"), str(base / "exports"), now.isoformat(),
    ]  # fmt: skip
    return subprocess.run(
        args, cwd=ROOT, env={**os.environ, KILL: spec}, capture_output=True, text=True, timeout=120, check=False
    )


def _keys_in_files(outbox: Path) -> dict[str, list[str]]:
    """send_key -> the files (below the outbox) that have it, once per row."""
    found: dict[str, list[str]] = {}
    for path in sorted(outbox.rglob("*.csv")):
        for row in pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=["send_key"])).to_pylist():
            found.setdefault(row["send_key"], []).append(path.relative_to(outbox).as_posix())
    return found


def _check_after_kill(db: Path, outbox: Path, what: str) -> None:
    """What a kill may leave: no key in two files or twice in one; each file is a whole group of decided sends
    (pending or delivered); every send marked delivered is in its file."""
    in_files = _keys_in_files(outbox)
    twice = {k: f for k, f in in_files.items() if len(f) > 1}
    assert not twice, f"{what}: send keys in more than one row: {list(twice.items())[:3]}"
    with duckdb.connect(str(db), read_only=True) as con:
        if not con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'journeys' AND table_name = 'sends'"
        ).fetchone()[0]:
            assert not in_files, f"{what}: files without a journeys.sends table"
            return
        rows = con.execute(
            "SELECT send_key, journey, export_key, planned_at, status FROM journeys.sends WHERE status <> 'suppressed'"
        ).fetchall()
    groups: dict[str, set[str]] = {}
    for key, journey, export_key, planned_at, status in rows:
        name = f"journeys/{journey}/{export_key}/{planned_at:%Y-%m-%dT%H-%M-%S}.csv"
        groups.setdefault(name, set()).add(key)
        if status == "delivered":
            assert in_files.get(key) == [name], f"{what}: {key} marked delivered, in files {in_files.get(key)}"
    by_file: dict[str, set[str]] = {}
    for key, (name,) in in_files.items():
        by_file.setdefault(name, set()).add(key)
    for name, keys in by_file.items():
        assert keys == groups.get(name), f"{what}: {name} is not its group's sends"


def _compare(db: Path, outbox: Path, reference: Reference, what: str) -> None:
    got = _outcome(db, outbox)
    for table, rows in reference.outcome.tables.items():
        assert got.tables[table] == rows, f"{what}: journeys.{table} differs from the reference"
    assert sorted(got.files) == sorted(reference.outcome.files), f"{what}: other files than the reference's"
    for name, content in reference.outcome.files.items():
        assert got.files[name] == content, f"{what}: {name} differs from the reference's"
    in_files = _keys_in_files(outbox)
    delivered = {row[0] for row in got.tables["sends"] if row[11] == "delivered"}
    assert sorted(in_files) == sorted(delivered) and all(len(f) == 1 for f in in_files.values()), what


def test_the_reference(reference: Reference) -> None:
    """What the kills are measured against: hundreds of sends, three files in every tick, none pending."""
    sends = reference.outcome.tables["sends"]
    statuses = {s[11] for s in sends}
    assert statuses == {"delivered", "suppressed"}
    assert sum(1 for s in sends if s[11] == "delivered") > 900
    assert reference.writes == [3, 3, 3, 3] and len(reference.outcome.files) == 12
    for statements in reference.statements:
        phases = _phases(statements)
        # per journey: BEGIN, versions, positions (delete, insert), log, sends, the exports' delivery log, ticks
        assert phases.count("commit") == 2 and phases.count("apply") == 16 and phases.count("deliver") == 8


def test_killed_at_many_points_each_send_once(base: Path, reference: Reference, tmp_path: Path) -> None:
    journeys, exports = _definitions(base)
    kills: dict[str, int] = {}
    temporary = []
    for series, killed_at in enumerate(_kill_plan(reference, random.Random(SEED))):
        folder = tmp_path / f"series-{series}"
        folder.mkdir()
        db, outbox = folder / "db.duckdb", folder / "outbox"
        _copy(base / "base.duckdb", db)
        for tick, now in enumerate(TICKS):
            for attempt, spec in enumerate(killed_at.get(tick, [])):
                what = f"series {series}, tick {now:%m-%d %H:%M}, run {attempt + 1} killed at {spec}"
                done = _run_killed(base, db, outbox, now, spec)
                assert done.returncode in (-signal.SIGKILL, 0), f"{what}: {done.stderr[-3000:]}"
                if done.returncode == 0:
                    # A first run reaches its point (its counts are the reference's); a timer or a resumed
                    # run may end first.
                    assert attempt or spec.startswith("delay"), f"{what}: not killed ({done.stdout.strip()})"
                    break
                kind = spec.partition(":")[0]
                kills[kind] = kills.get(kind, 0) + 1
                _check_after_kill(db, outbox, what)
            with duckdb.connect(str(db)) as con:  # the resumed run (or the tick nobody killed)
                run.tick(con, journeys, exports, now, outbox)
        _compare(db, outbox, reference, f"series {series} ({killed_at})")
        temporary += [p.relative_to(outbox).as_posix() for p in outbox.rglob("*") if p.name.endswith(".tmp")]
    print(f"kills by kind {kills}, {sum(kills.values())} in all; temporary files left behind: {len(temporary)}")
    # Every first run at a statement or a file is killed (asserted above): 6 points in each of the 4 ticks.
    assert kills["stmt"] + kills["write"] + kills["tmp"] >= 24
    # What a kill inside a write leaves (a hidden temporary file) the next delivery removes.
    assert kills["tmp"] >= 4 and temporary == []


def test_killed_inside_the_first_ensure_then_resumed(base: Path, reference: Reference, tmp_path: Path) -> None:
    """Killed between creating the first and the last table of the state: the resumed ticks do what the
    reference does."""
    journeys, exports = _definitions(base)
    for tick, n in sorted(_inside_first_ensure(reference)):
        folder = tmp_path / f"killed-{tick}-{n}"
        folder.mkdir()
        db, outbox = folder / "db.duckdb", folder / "outbox"
        _copy(base / "base.duckdb", db)
        with duckdb.connect(str(db)) as con:
            for now in TICKS[:tick]:
                run.tick(con, journeys, exports, now, outbox)
        assert _run_killed(base, db, outbox, TICKS[tick], f"stmt:{n}").returncode == -signal.SIGKILL
        with duckdb.connect(str(db)) as con:
            for now in TICKS[tick:]:
                run.tick(con, journeys, exports, now, outbox)
        _compare(db, outbox, reference, f"killed after statement {n} of tick {tick}")
