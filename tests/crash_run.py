"""`acrm run --as-of DATE`, SIGKILLed by itself at one stage boundary, so that a test can check what is left.

python -m tests.crash_run STAGE AS_OF [PID_FILE]

STAGE: load (after raw_orders is loaded), dbt (2 s into `dbt build`; its pid is written to PID_FILE),
history (segment changes appended, state and commit not yet), export (after the first committed ledger
batch), none (no kill).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def dbt_children() -> list[int]:
    me = str(os.getpid())
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == me and b"dbt" in (stat.parent / "cmdline").read_bytes():
                out.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return out


def main() -> None:
    stage, as_of = sys.argv[1], sys.argv[2]
    if stage == "load":
        from acrm_pipelines.components import ingest as assets

        real = assets.load_table_if_changed

        def load_then_die(con, spec, *args, **kwargs):
            result = real(con, spec, *args, **kwargs)
            if spec.name == "orders":
                die()
            return result

        assets.load_table_if_changed = load_then_die
    elif stage == "dbt":

        def watch() -> None:
            while not (kids := dbt_children()):
                time.sleep(0.05)
            time.sleep(2)
            Path(sys.argv[3]).write_text(" ".join(map(str, kids)))
            die()

        threading.Thread(target=watch, daemon=True).start()
    elif stage == "history":
        from acrm_pipelines.segments import state

        state.save = lambda *args, **kwargs: die()
    elif stage == "export":
        from acrm_pipelines.exports.destinations.ledger import LedgerSink

        real_issue = LedgerSink._issue

        def issue_then_die(self, *args, **kwargs):
            real_issue(self, *args, **kwargs)
            die()

        LedgerSink._issue = issue_then_die

    from acrm_pipelines.cli import main as acrm

    sys.exit(acrm(["run", "--as-of", as_of]))


if __name__ == "__main__":
    main()
