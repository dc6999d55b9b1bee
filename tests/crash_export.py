"""Run one export in its own process, printing progress, so that a test can SIGKILL it mid-way.

python -m tests.crash_export DB SEGMENTS_DIR EXPORTS_DIR KEY AS_OF OUTBOX [PAUSE_SECONDS]
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path

import duckdb

from acrm_pipelines.exports.run import run_export
from acrm_pipelines.exports.validate import load_exports
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.validate import load_segments


def main() -> None:
    db, segments_dir, exports_dir, key, as_of, outbox = sys.argv[1:7]
    pause = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    catalogue = load_catalogue()
    segments = load_segments([Path(segments_dir)], catalogue)
    exports = load_exports([Path(exports_dir)], segments, catalogue)

    def progress(line: str) -> None:
        print(line, flush=True)
        time.sleep(pause)  # gives the test a moment between committed batches

    with duckdb.connect(db) as con:
        print("started", flush=True)  # Python and the definitions are loaded: a kill from now lands in the export
        run_export(con, exports[key], date.fromisoformat(as_of), Path(outbox), "crash-test", progress)
    print("done", flush=True)


if __name__ == "__main__":
    main()
