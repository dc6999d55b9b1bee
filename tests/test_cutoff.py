"""One end-of-day cut-off: the dbt macro (`macros/as_of.sql`) and Python's (`segments/dates.py`) agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

from acrm_pipelines.segments.dates import cutoff
from acrm_pipelines.settings import DBT_PROJECT_DIR

DAYS = [date(2024, 2, 28), date(2024, 2, 29), date(2024, 12, 31), date(2025, 3, 30)]  # leap day, year end, DST


def test_dbt_and_python_cut_each_day_at_the_same_instant(tmp_path: Path) -> None:
    selects = " union all ".join(f"select '{d}' as day, {{{{ cutoff(\"cast('{d}' as date)\") }}}} as cut" for d in DAYS)
    dbt = Path(sys.executable).parent / "dbt"
    env = {**os.environ, "ACRM_DUCKDB_PATH": str(tmp_path / "cut.duckdb"), "DBT_TARGET_PATH": str(tmp_path / "t")}
    shown = subprocess.run(
        [str(dbt), "show", "--inline", selects, "--output", "json", "--log-format", "json", "--limit", "10",
         "--vars", json.dumps({"as_of": "2024-02-29"}), "--profiles-dir", ".", "--project-dir", "."],
        cwd=DBT_PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-2000:]
    preview = next(json.loads(line)["data"]["preview"] for line in shown.stdout.splitlines() if '"preview"' in line)
    rows = {r["day"]: datetime.fromisoformat(str(r["cut"])) for r in json.loads(preview)}
    # By hand: the first instant of the next day.
    assert rows == {
        "2024-02-28": datetime(2024, 2, 29),
        "2024-02-29": datetime(2024, 3, 1),
        "2024-12-31": datetime(2025, 1, 1),
        "2025-03-30": datetime(2025, 3, 31),
    }
    assert all(cutoff(d) == rows[str(d)] for d in DAYS)
