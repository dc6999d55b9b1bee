"""One journey tick (`run.tick`: plan, apply, deliver for every journey) in its own process, SIGKILLed by itself
at a chosen point, so that tests/test_journeys_crash.py can check what a kill leaves and what a resumed tick does.

python -m tests.crash_journey DB OUTBOX JOURNEYS_DIR SEGMENTS_DIR EXPORTS_DIR NOW

CRASH_JOURNEY_KILL (optional) says where the process kills itself:
  stmt:N   after the N-th DuckDB statement of the tick has run (counting from 1; BEGIN and COMMIT count)
  write:K  after the K-th journey file is written (write_delivered returned), before its sends are marked
  tmp:K    inside the K-th file write: the temporary file written, not yet compared or renamed into place
  delay:S  S seconds after the tick starts, wherever it is then (a DuckDB statement, a file, closing the file)
Without it (or when the point is never reached) the tick runs to the end and prints `statements N writes K`.

`Counting` is also used in-process by the test, to count a tick's statements and see which is which.
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from acrm_pipelines.exports.validate import load_exports
from acrm_pipelines.journeys import deliver, run
from acrm_pipelines.journeys.validate import load_journeys
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import load_segments

KILL = "CRASH_JOURNEY_KILL"


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Counting:
    """A DuckDB connection that keeps the text of each statement run through it and, with `kill_after`,
    SIGKILLs its process once the statement of that number (counting from 1) has run."""

    def __init__(self, con: duckdb.DuckDBPyConnection, kill_after: int = 0):
        self._con, self._kill_after = con, kill_after
        self.statements: list[str] = []

    def execute(self, query, *args, **kwargs):
        # DuckDB finds the Arrow tables a statement names (`FROM sends`) in the calling frame's variables, and
        # that frame is this method: lend it the real caller's tables for the statement.
        caller = inspect.currentframe().f_back.f_locals
        lent = {name: value for name, value in caller.items() if isinstance(value, pa.Table)}
        before = {name: globals()[name] for name in lent if name in globals()}
        globals().update(lent)
        try:
            result = self._con.execute(query, *args, **kwargs)
        finally:
            for name in lent:
                globals().pop(name, None)
            globals().update(before)
        self.statements.append(" ".join(str(query).split()))
        if len(self.statements) == self._kill_after:
            die()
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


def _kill_on_call(module, name: str, k: int) -> None:
    """`module.name` kills the process when its k-th call returns."""
    real, calls = getattr(module, name), [0]

    def dying(*args, **kwargs):
        result = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == k:
            die()
        return result

    setattr(module, name, dying)


def main() -> None:
    db, outbox, journeys_dir, segments_dir, exports_dir, now = sys.argv[1:7]
    kind, _, value = os.environ.get(KILL, "").partition(":")
    catalogue = load_catalogue()
    segments = load_segments([Path(segments_dir)], catalogue)
    exports = load_exports([Path(exports_dir)], segments, catalogue)
    journeys = load_journeys([Path(journeys_dir)], segments, exports)

    writes = [0]
    real_write = deliver.write_delivered

    def counted_write(*args, **kwargs):
        real_write(*args, **kwargs)
        writes[0] += 1

    deliver.write_delivered = counted_write
    if kind == "write":
        _kill_on_call(deliver, "write_delivered", int(value))
    elif kind == "tmp":
        _kill_on_call(pacsv, "write_csv", int(value))  # files.write_atomically writes the temporary file with it

    with duckdb.connect(db) as real_con:
        con = Counting(real_con, int(value) if kind == "stmt" else 0)
        if kind == "delay":
            threading.Timer(float(value), die).start()
        run.tick(con, journeys, exports, datetime.fromisoformat(now), Path(outbox))
    print(f"statements {len(con.statements)} writes {writes[0]}", flush=True)
    os._exit(0)  # a pending delay timer does not hold the process


if __name__ == "__main__":
    main()
