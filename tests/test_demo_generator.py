"""The demo generator is deterministic and writes every table of the input contract."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.csv as pacsv

from acrm_pipelines.demo.generator import TABLES, generate


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", customers=500, seed=1)
    generate(tmp_path / "b", customers=500, seed=1)
    generate(tmp_path / "c", customers=500, seed=2)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    for name in TABLES:
        rows = sum(pacsv.read_csv(f).num_rows for f in (tmp_path / "a" / name).glob("*.csv"))
        assert rows == a["tables"][name] > 0, name


def test_skew_and_statuses(tmp_path: Path) -> None:
    generate(tmp_path / "d", customers=4000, seed=3)
    orders = pacsv.read_csv(tmp_path / "d" / "orders" / "part-00000.csv").to_pandas()
    per_customer = orders.groupby("customer_id").size().reindex([f"C{i:08d}" for i in range(4000)], fill_value=0)
    # Most customers buy rarely, a few often.
    assert per_customer.median() < per_customer.mean()
    assert (per_customer == 0).mean() > 0.1
    assert per_customer.max() > 10 * per_customer.median()
    assert set(orders["status"]) == {"completed", "cancelled", "returned"}
    customers = pacsv.read_csv(tmp_path / "d" / "customers" / "part-00000.csv").to_pandas()
    assert {"custom_loyalty_tier", "custom_pet_owner", "consent_sms", "tags"} <= set(customers.columns)
    assert customers["phone"].str.startswith("8 (").any() and customers["phone"].str.startswith("+7").any()


def test_parquet_output(tmp_path: Path) -> None:
    summary = generate(tmp_path / "p", customers=200, seed=1, fmt="parquet")
    assert summary["files"]["orders"][0].endswith(".parquet")
