"""`acrm-dbt`: the dbt command, stopped by the kernel when the process that started it dies.

dagster-dbt starts dbt as a plain child process; when a run is killed (SIGKILL, OOM), that child would go
on writing the DuckDB file as an orphan. PR_SET_PDEATHSIG asks Linux to kill it with its parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            sys.exit(1)
    dbt = Path(sys.executable).parent / "dbt"
    os.execv(dbt, [str(dbt), *sys.argv[1:]])  # the death signal is kept across exec


if __name__ == "__main__":
    main()
