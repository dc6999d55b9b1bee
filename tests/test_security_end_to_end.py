"""Hostile landing data through the real path (`acrm run`: the loader, dbt, segments, Dagster's storage).

- Header names built to break out of a quoted identifier never change the SQL that runs: a canary file's
  content and a canary environment variable appear in no table. (Before the fix, the first header below made
  a normal run copy the file into marts.customer_features.)
- No landing e-mail or phone reaches DAGSTER_HOME, dbt's logs and target folder, or the terminal, after a run
  on data with a ragged row, a bad byte and a split on a per-customer value, and after a split on a personal
  field was attempted.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import phonenumbers

from acrm_pipelines.settings import DBT_PROJECT_DIR

REPO = Path(__file__).resolve().parent.parent
ACRM = Path(sys.executable).parent / "acrm"
CANARY_FILE_TEXT = "CANARY-FILE-5d1e0b"
CANARY_ENV_TEXT = "CANARY-ENV-8c2f41"
N = 60  # customers with a per-customer custom_code: more arms than run metadata lists


def hostile_headers(canary: Path) -> list[str]:
    return [
        f"custom_x\", (SELECT content FROM read_text('{canary}')) AS \"custom_y",
        "custom_e\", getenv('ACRM_CANARY_SECRET') AS \"custom_f",
        'custom_p"; DROP TABLE raw.orders; --',
        f"custom_q' || (SELECT content FROM read_text('{canary}')) || '",
        "custom_c/* a comment */",
        'custom_bs\\"x',
        "custom_ünï",
        "custom_line\nbreak",
    ]


def email(i: int) -> str:
    return f"p{i:03d}.canary@example.org"


def phone(i: int) -> str:
    return f"+7916555{i:04d}"


def write_landing(land: Path, canary: Path) -> list[str]:
    """The landing folder; returns every personal value in it, as written and as normalised."""
    land.mkdir(parents=True)
    header = ["customer_id", "email", "phone", "country", "registered_at", "custom_tier", "custom_code"]
    header += hostile_headers(canary)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for i in range(1, N + 1):
        row = [f"c{i:03d}", email(i), phone(i), "RU", "2024-01-01", "gold" if i % 2 else "silver", f"K{i:03d}"]
        writer.writerow(row + [f"v{j}" for j in range(len(header) - len(row))])
    data = out.getvalue().encode()
    data += f"c{N + 1:03d},{email(N + 1)},{phone(N + 1)},RU\n".encode()  # ragged: too few fields
    bad = f"c{N + 2:03d},{email(N + 2)}\xff,{phone(N + 2)},RU,2024-01-01,gold,K999" + ",v" * (len(header) - 7)
    data += bad.encode("latin-1") + b"\n"  # a byte that is not UTF-8
    (land / "customers.csv").write_bytes(data)
    (land / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,total_amount\n1,c001,2024-03-01 10:00:00,100\n2,c002,2024-03-02,50\n"
    )
    values = []
    for i in range(1, N + 3):
        e164 = phonenumbers.format_number(phonenumbers.parse(phone(i)), phonenumbers.PhoneNumberFormat.E164)
        values += [email(i), phone(i), e164, phone(i)[1:]]
    return values


SEGMENTS = """\
key: everyone
rules: {field: customer_id, op: is_not_null}
---
key: by_code
from: {union: [everyone]}
split: {by_field: custom_code}
---
key: gold
rules: {field: custom_tier, op: "=", value: gold}
"""
PERSONAL_SPLIT = """\
key: by_email
rules: {field: customer_id, op: is_not_null}
split:
  by_field: email
"""


def _env(tmp: Path, land: Path, segments: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    (tmp / "no_exports").mkdir(exist_ok=True)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ACRM_LANDING_DIR": str(land),
        "ACRM_DUCKDB_PATH": str(tmp / "acrm.duckdb"),
        "ACRM_SEGMENTS_DIR": str(segments),
        "ACRM_EXPORTS_DIR": str(tmp / "no_exports"),
        "ACRM_JOURNEYS_DIR": str(tmp / "no_journeys"),
        "ACRM_OUTBOX_DIR": str(tmp / "outbox"),
        "ACRM_START_DATE": "2024-01-01",
        "ACRM_CANARY_SECRET": CANARY_ENV_TEXT,
    }


def _every_value(db: Path) -> str:
    """Every value of every table in the DuckDB file, as one text."""
    parts = []
    with duckdb.connect(str(db), read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
        for schema, table in tables:
            parts.append(f"{schema}.{table}")
            for row in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                parts.append(repr(row))
    return "\n".join(parts)


def _files_text(folders: list[Path]) -> dict[str, bytes]:
    out = {}
    for folder in folders:
        for path in folder.rglob("*") if folder.exists() else []:
            if path.is_file():
                out[str(path)] = path.read_bytes()
    return out


def test_hostile_headers_and_personal_data_through_acrm_run(tmp_path: Path) -> None:
    canary = tmp_path / "secret.txt"
    canary.write_text(CANARY_FILE_TEXT)
    land = tmp_path / "landing"
    personal = write_landing(land, canary)
    segments = tmp_path / "segments"
    segments.mkdir()
    (segments / "s.yaml").write_text(SEGMENTS)
    bad_segments = tmp_path / "personal_split"
    bad_segments.mkdir()
    (bad_segments / "p.yaml").write_text(PERSONAL_SPLIT)
    env = _env(tmp_path, land, segments)
    logs_before = _files_text([DBT_PROJECT_DIR / "logs"])

    refused = subprocess.run(
        [str(ACRM), "validate", str(bad_segments)], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1
    assert "p.yaml:4: split.by_field:" in refused.stderr and "personal field" in refused.stderr

    done = subprocess.run(
        [str(ACRM), "run", "--as-of", "2024-03-10"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]

    db = tmp_path / "acrm.duckdb"
    everything = _every_value(db)
    assert CANARY_FILE_TEXT not in everything
    assert CANARY_ENV_TEXT not in everything
    with duckdb.connect(str(db), read_only=True) as con:
        custom = [
            c
            for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'marts' "
                "AND table_name = 'customer_features' AND starts_with(column_name, 'custom_') ORDER BY ordinal_position"
            ).fetchall()
        ]
        assert custom == ["custom_code", "custom_tier"]  # the hostile names were not loaded
        assert con.execute("SELECT count(*) FROM raw.orders").fetchone()[0] == 2  # no DROP ran
        assert con.execute("SELECT count(*) FROM marts.customer_features").fetchone()[0] == N
        quarantined = con.execute(
            "SELECT row_number, reason FROM raw.quarantine WHERE table_name = 'customers' ORDER BY 1"
        ).fetchall()
        assert quarantined == [(N + 1, "malformed_row:too_few_columns"), (N + 2, "malformed_row:invalid_unicode")]
        sizes = dict(con.execute("SELECT segment_key, size FROM segments.evaluations").fetchall())
        assert sizes == {"everyone": N, "by_code": N, "gold": N // 2}

    # Personal values: nowhere in Dagster's storage, dbt's logs and target, or what the commands printed.
    written = _files_text([tmp_path / "home", DBT_PROJECT_DIR / "target"])
    written |= {p: b for p, b in _files_text([DBT_PROJECT_DIR / "logs"]).items() if logs_before.get(p) != b}
    written["terminal"] = (done.stdout + done.stderr + refused.stdout + refused.stderr).encode()
    assert len(written) > 5
    leaks = {(path, v) for path, data in written.items() for v in personal if v.encode() in data}
    assert leaks == set()
    # The split on a per-customer value shows its arm count, not its values.
    from dagster import AssetKey, DagsterInstance

    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    metadata = instance.get_latest_materialization_event(AssetKey(["segment_set"])).asset_materialization.metadata
    rows = {r.data["segment"]: r.data for r in metadata["table"].value.records}
    assert rows["by_code"]["arms"] == N
    assert not [k for k in metadata if "K001" in k or "arm." in k]
    loaded = instance.get_latest_materialization_event(AssetKey(["raw_customers"])).asset_materialization.metadata
    assert len(loaded["rejected_columns"].value) == len(hostile_headers(canary))
