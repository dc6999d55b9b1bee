"""The postgres destination against a real PostgreSQL server (tests/pg_server.py; `make system-deps` installs it).

Every expectation is written by hand from the features below: which customers are deliverable on the
email channel, what each formatted output field becomes, and which rows delta mode inserts and deletes.
"""

from __future__ import annotations

import json
import socket
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from acrm_pipelines.exports.destinations import DeliveryFailed
from acrm_pipelines.exports.run import run_export

SEGMENT = "key: aud\nrules: {field: total_amount, op: '>=', value: 100}\n"
TABLE = "crm.audience"

FIELDS = {
    "customer_id": "customer_id",
    "email": {"feature": "email", "format": "lower"},
    "first_name": {"feature": "first_name", "format": "title"},
    "total": {"feature": "total_amount", "format": "round2"},
    "bonus": {"feature": "bonus_balance", "format": "int"},
    "sms_ok": "consent_sms",
    "last_order": "last_order_date",
    "registered": {"feature": "registered_at", "format": "date"},
    "source": {"const": "acrm"},
}


def export_def(key: str = "pg_aud", table: str = TABLE, mode: str = "full", **destination) -> dict:
    return {
        "key": key,
        "segment": "aud",
        "channel": "email",
        "campaign": "spring",
        "mode": mode,
        "destination": {"type": "postgres", "table": table, **destination},
        "fields": FIELDS,
    }


def add_dates(con, rows: list[dict]) -> None:
    """The date features export_fixtures does not carry: last_order_date (date), registered_at (timestamp)."""
    con.execute("ALTER TABLE marts.customer_features ADD COLUMN IF NOT EXISTS last_order_date DATE")
    con.execute("ALTER TABLE marts.customer_features ADD COLUMN IF NOT EXISTS registered_at TIMESTAMP")
    for r in rows:
        con.execute(
            "UPDATE marts.customer_features SET last_order_date = ?, registered_at = ? WHERE customer_id = ?",
            [r.get("last_order_date"), r.get("registered_at"), r["customer_id"]],
        )


@pytest.fixture
def change_day(set_features, record_segments):
    """`change_day(con, segments, rows, as_of)`: the features (with their dates) become `rows`, and the segments
    are recorded on `as_of`."""

    def change_day(con, segments, rows: list[dict], as_of: date) -> None:
        set_features(con, rows)
        add_dates(con, rows)
        record_segments(con, segments, as_of)

    return change_day


def read_table(dsn: str, table: str = TABLE) -> dict[str, dict]:
    schema, name = table.split(".")
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        rows = conn.execute(sql.SQL("SELECT * FROM {} ORDER BY customer_id").format(sql.Identifier(schema, name)))
        return {r["customer_id"]: r for r in rows}


def column_types(dsn: str, table: str = TABLE) -> dict[str, str]:
    schema, name = table.split(".")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            [schema, name],
        ).fetchall()
    return dict(rows)


def run_rows(con, key: str) -> list[tuple]:
    return con.execute(
        "SELECT as_of, run_id, status, location, error, counts FROM exports.runs WHERE export_key = ? "
        "ORDER BY started_at",
        [key],
    ).fetchall()


@pytest.fixture
def pg(postgres_dsn, monkeypatch):
    """The test server's DSN in ACRM_POSTGRES_DSN, with no crm schema left over from another test."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS crm CASCADE")
    monkeypatch.setenv("ACRM_POSTGRES_DSN", postgres_dsn)
    return postgres_dsn


# --- (a) + (b): a full export creates the table, then a later run upserts in place ---------------------------

D1, D2 = date(2024, 3, 1), date(2024, 3, 2)
DAY1 = [
    # deliverable: in the segment (total_amount >= 100), email consent, not unsubscribed or complained
    {
        "customer_id": "a1",
        "first_name": "aNNA",
        "email": "Anna@Example.IO",
        "total_amount": 150.456,
        "bonus_balance": 12.7,
        "consent_email": True,
        "consent_sms": True,
        "last_order_date": date(2024, 2, 20),
        "registered_at": datetime(2021, 5, 6, 13, 45),
    },
    {
        "customer_id": "a2",
        "first_name": "boris",
        "email": "b@x.io",
        "total_amount": 1000.0,
        "consent_email": True,
        "consent_sms": False,
        "unsubscribed_email": False,
        "registered_at": datetime(2023, 12, 31, 23, 59, 59),
    },
    {
        "customer_id": "a3",
        "email": "C@X.IO",
        "total_amount": 100.0,
        "bonus_balance": 0.0,
        "consent_email": True,
        "complained": False,
        "last_order_date": date(2023, 1, 31),
    },
    # members, suppressed on email
    {"customer_id": "s1", "email": "s1@x.io", "total_amount": 500.0, "consent_email": False},
    {"customer_id": "s2", "email": "s2@x.io", "total_amount": 500.0},  # consent unknown: no consent
    {"customer_id": "s3", "email": "s3@x.io", "total_amount": 500.0, "consent_email": True, "unsubscribed_email": True},
    {"customer_id": "s4", "email": "s4@x.io", "total_amount": 500.0, "consent_email": True, "complained": True},
    # not a member
    {"customer_id": "n1", "email": "n1@x.io", "total_amount": 99.99, "consent_email": True},
]
EXPECTED_DAY1 = {
    "a1": {
        "email": "anna@example.io",
        "first_name": "Anna",
        "total": Decimal("150.46"),
        "bonus": 13,
        "sms_ok": True,
        "last_order": date(2024, 2, 20),
        "registered": "2021-05-06",
        "source": "acrm",
    },
    "a2": {
        "email": "b@x.io",
        "first_name": "Boris",
        "total": Decimal("1000"),
        "bonus": None,
        "sms_ok": False,
        "last_order": None,
        "registered": "2023-12-31",
        "source": "acrm",
    },
    "a3": {
        "email": "c@x.io",
        "first_name": None,
        "total": Decimal("100"),
        "bonus": 0,
        "sms_ok": None,
        "last_order": date(2023, 1, 31),
        "registered": None,
        "source": "acrm",
    },
}


def by_hand(expected: dict[str, dict], key: str, as_of: date) -> dict[str, dict]:
    return {
        cid: {"customer_id": cid, **fields, "acrm_export": key, "acrm_as_of": as_of} for cid, fields in expected.items()
    }


def without_updated_at(table: dict[str, dict]) -> dict[str, dict]:
    return {cid: {k: v for k, v in row.items() if k != "acrm_updated_at"} for cid, row in table.items()}


def test_full_export_creates_the_table_and_upserts_the_deliverable_customers(
    tmp_path: Path, pg: str, make_db, one_export, change_day
) -> None:
    con, segments = make_db(tmp_path, DAY1, SEGMENT, D1)
    add_dates(con, DAY1)
    export = one_export(tmp_path, export_def(), segments)

    result = run_export(con, export, D1, tmp_path / "outbox", "r1")

    assert result.location == "postgresql:crm.audience"
    assert result.counts["members"] == 7
    assert result.counts["sent"] == 3
    assert result.counts["suppressed.no_consent"] == 2
    assert result.counts["suppressed.unsubscribed"] == 1
    assert result.counts["suppressed.complained"] == 1
    assert column_types(pg) == {
        "customer_id": "text",
        "acrm_export": "text",
        "acrm_as_of": "date",
        "acrm_updated_at": "timestamp with time zone",
        "email": "text",
        "first_name": "text",
        "total": "numeric",
        "bonus": "bigint",
        "sms_ok": "boolean",
        "last_order": "date",
        "registered": "text",
        "source": "text",
    }
    table = read_table(pg)
    assert without_updated_at(table) == by_hand(EXPECTED_DAY1, "pg_aud", D1)  # s1..s4 and n1 are absent
    with psycopg.connect(pg) as conn:
        primary_key = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'crm.audience'::regclass AND i.indisprimary"
        ).fetchall()
    assert primary_key == [("customer_id",)]
    [(as_of, run_id, status, location, error, _)] = run_rows(con, "pg_aud")
    assert (as_of, run_id, status, location, error) == (D1, "r1", "success", "postgresql:crm.audience", None)
    delivered = con.execute(
        "SELECT customer_id, status, reason FROM exports.deliveries WHERE export_key = 'pg_aud' ORDER BY 1"
    ).fetchall()
    assert delivered == [
        ("a1", "sent", None),
        ("a2", "sent", None),
        ("a3", "sent", None),
        ("s1", "suppressed", "no_consent"),
        ("s2", "suppressed", "no_consent"),
        ("s3", "suppressed", "unsubscribed"),
        ("s4", "suppressed", "complained"),
    ]

    # (b) The next day, with changed features: the same rows are updated in place.
    day2 = [dict(r) for r in DAY1]
    changes = {
        "a1": {"first_name": "anna-MARIA", "total_amount": 200.0, "consent_sms": False, "bonus_balance": 99.2},
        "a2": {"email": "Boris@New.io", "consent_sms": True, "bonus_balance": 5.0, "last_order_date": date(2024, 3, 1)},
        "a3": {"first_name": "carl", "total_amount": 333.333, "registered_at": datetime(2024, 3, 1, 0, 0, 1)},
    }
    for r in day2:
        r.update(changes.get(r["customer_id"], {}))
    change_day(con, segments, day2, D2)

    result = run_export(con, export, D2, tmp_path / "outbox", "r2")

    assert result.counts["sent"] == 3
    expected = {
        "a1": {
            **EXPECTED_DAY1["a1"],
            "first_name": "Anna-maria",
            "total": Decimal("200"),
            "sms_ok": False,
            "bonus": 99,
        },
        "a2": {
            **EXPECTED_DAY1["a2"],
            "email": "boris@new.io",
            "sms_ok": True,
            "bonus": 5,
            "last_order": date(2024, 3, 1),
        },
        "a3": {**EXPECTED_DAY1["a3"], "first_name": "Carl", "total": Decimal("333.33"), "registered": "2024-03-01"},
    }
    after = read_table(pg)
    assert without_updated_at(after) == by_hand(expected, "pg_aud", D2)
    assert all(after[cid]["acrm_updated_at"] > table[cid]["acrm_updated_at"] for cid in after)
    assert [(r[0], r[2]) for r in run_rows(con, "pg_aud")] == [(D1, "success"), (D2, "success")]


# --- (c) delta mode over three days ---------------------------------------------------------------------------


def person(cid: str, total: float, consent: bool = True, **more) -> dict:
    return {"customer_id": cid, "email": f"{cid}@x.io", "total_amount": total, "consent_email": consent, **more}


E1, E2, E3 = date(2024, 4, 1), date(2024, 4, 2), date(2024, 4, 3)
DELTA_DAYS = [
    # c1, c2, c3 deliverable; c4 a member without consent; c5, c6 below the threshold.
    (E1, [person("c1", 100, first_name="ann"), person("c2", 200), person("c3", 300), person("c4", 400, False)]
     + [person("c5", 50), person("c6", 60)]),
    # c2 leaves the segment; c4 gives consent; c5 enters; c1's name changes (delta does not re-send it).
    (E2, [person("c1", 100, first_name="zoe"), person("c2", 20), person("c3", 300), person("c4", 400)]
     + [person("c5", 150), person("c6", 60)]),
    # c2 comes back; c3 unsubscribes (still a member); c5 leaves; c6 enters.
    (E3, [person("c1", 100, first_name="zoe"), person("c2", 200), person("c3", 300, unsubscribed_email=True)]
     + [person("c4", 400), person("c5", 10), person("c6", 600)]),
]  # fmt: skip
# After each day: customer -> the day its row was inserted (acrm_as_of), and (sent, removed) by the run.
DELTA_EXPECTED = [
    ({"c1": E1, "c2": E1, "c3": E1}, ["c1", "c2", "c3"], []),
    ({"c1": E1, "c3": E1, "c4": E2, "c5": E2}, ["c4", "c5"], ["c2"]),
    ({"c1": E1, "c2": E3, "c4": E2, "c6": E3}, ["c2", "c6"], ["c3", "c5"]),
]


def test_delta_mode_inserts_newcomers_and_deletes_leavers(
    tmp_path: Path, pg: str, make_db, one_export, change_day
) -> None:
    (first_day, first_rows), *_ = DELTA_DAYS
    con, segments = make_db(tmp_path, first_rows, SEGMENT, first_day)
    add_dates(con, first_rows)
    export = one_export(tmp_path, export_def("pg_delta", "crm.delta_audience", mode="delta"), segments)

    for i, ((as_of, rows), (at_destination, sent, removed)) in enumerate(zip(DELTA_DAYS, DELTA_EXPECTED, strict=True)):
        if i:
            change_day(con, segments, rows, as_of)
        result = run_export(con, export, as_of, tmp_path / "outbox", f"d{i + 1}")

        table = read_table(pg, "crm.delta_audience")
        assert {cid: row["acrm_as_of"] for cid, row in table.items()} == at_destination, as_of
        logged = con.execute(
            "SELECT status, list(customer_id ORDER BY customer_id) FROM exports.deliveries "
            "WHERE export_key = 'pg_delta' AND as_of = ? AND status IN ('sent', 'removed') GROUP BY 1",
            [as_of],
        ).fetchall()
        assert dict(logged) == {k: v for k, v in (("sent", sent), ("removed", removed)) if v}, as_of
        assert (result.counts.get("sent", 0), result.counts.get("removed", 0)) == (len(sent), len(removed))
        audience = con.execute("SELECT customer_id FROM exports.audience WHERE export_key = 'pg_delta' ORDER BY 1")
        assert [r[0] for r in audience.fetchall()] == sorted(at_destination), as_of

    # Rows already at the destination are not re-sent in delta mode: c1 keeps the name of its first day.
    assert table["c1"]["first_name"] == "Ann"
    assert table["c2"]["total"] == Decimal("200")
    assert [r[2] for r in run_rows(con, "pg_delta")] == ["success"] * 3


# --- (d) + (e): failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dsn_env", [None, "ACRM_POSTGRES_DSN_WAREHOUSE"])
def test_missing_dsn_variable_fails_naming_it(
    tmp_path: Path, monkeypatch, dsn_env: str | None, make_db, one_export
) -> None:
    con, segments = make_db(tmp_path, DAY1, SEGMENT, D1)
    add_dates(con, DAY1)
    if dsn_env is None:
        monkeypatch.delenv("ACRM_POSTGRES_DSN", raising=False)
        export = one_export(tmp_path, export_def(), segments)
    else:  # the export's own variable is read, not the default one
        monkeypatch.setenv("ACRM_POSTGRES_DSN", "host=127.0.0.1 port=1 dbname=unused")
        monkeypatch.delenv(dsn_env, raising=False)
        export = one_export(tmp_path, export_def(dsn_env=dsn_env), segments)
    variable = dsn_env or "ACRM_POSTGRES_DSN"

    with pytest.raises(DeliveryFailed, match=variable) as failed:
        run_export(con, export, D1, tmp_path / "outbox", "r1")

    assert "pg_aud" in str(failed.value)
    [(_, _, status, _, error, _)] = run_rows(con, "pg_aud")
    assert status == "failed" and variable in error
    assert con.execute("SELECT count(*) FROM exports.audience WHERE export_key = 'pg_aud'").fetchone() == (0,)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_server_fails_naming_the_table(tmp_path: Path, monkeypatch, make_db, one_export) -> None:
    con, segments = make_db(tmp_path, DAY1, SEGMENT, D1)
    add_dates(con, DAY1)
    monkeypatch.setenv(
        "ACRM_POSTGRES_DSN", f"postgresql://acrm:s3cret-pw@127.0.0.1:{closed_port()}/crm?connect_timeout=5"
    )
    export = one_export(tmp_path, export_def(), segments)

    with pytest.raises(DeliveryFailed, match=r"crm\.audience") as failed:
        run_export(con, export, D1, tmp_path / "outbox", "r1")

    message = str(failed.value)
    assert "pg_aud" in message and "s3cret-pw" not in message
    [(as_of, run_id, status, location, error, counts)] = run_rows(con, "pg_aud")
    assert (as_of, run_id, status) == (D1, "r1", "failed")
    assert error == message and "crm.audience" in error
    assert json.loads(counts) == {} and not location
    assert con.execute("SELECT count(*) FROM exports.deliveries WHERE export_key = 'pg_aud'").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM exports.audience WHERE export_key = 'pg_aud'").fetchone() == (0,)


def test_full_mode_mirrors_the_audience_and_refuses_a_changed_column_type(
    tmp_path: Path, pg: str, make_db, one_export, change_day
) -> None:
    """A full export deletes its own rows of customers who left; a column whose type changed fails clearly."""
    con, segments = make_db(tmp_path, [person("k1", 150), person("k2", 150), person("k3", 10)], SEGMENT, E1)
    add_dates(con, [])
    export = one_export(tmp_path, export_def(key="mirror"), segments)
    run_export(con, export, E1, tmp_path / "outbox", "r1")
    assert sorted(read_table(pg)) == ["k1", "k2"]
    with psycopg.connect(pg, autocommit=True) as conn:  # a row another export wrote stays
        conn.execute("INSERT INTO crm.audience (customer_id, acrm_export) VALUES ('other', 'someone_else')")
    change_day(con, segments, [person("k1", 150), person("k2", 10), person("k3", 150)], E2)
    run_export(con, export, E2, tmp_path / "outbox", "r2")
    assert sorted(read_table(pg)) == ["k1", "k3", "other"]

    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("ALTER TABLE crm.audience ALTER COLUMN total TYPE text")
    with pytest.raises(DeliveryFailed, match="column total of crm.audience is text, the export sends numeric"):
        run_export(con, export, E2, tmp_path / "outbox", "r3")
