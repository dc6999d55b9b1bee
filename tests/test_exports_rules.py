"""Suppression, hold-out, frequency caps and delta mode: each with a case a wrong implementation would send."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

import pytest

from acrm_pipelines.exports.audience import suppressed_sent
from acrm_pipelines.exports.run import run_export
from acrm_pipelines.segments.members import arm_recorded
from acrm_pipelines.yaml_specs import DefinitionErrors

D1, D2, D3 = date(2024, 5, 1), date(2024, 5, 2), date(2024, 5, 3)


def read_ids(path: Path) -> list[str]:
    with path.open() as f:
        return [row["customer_id"] for row in csv.DictReader(f)]


def log(con, key: str, as_of: date) -> dict[str, tuple[str, str | None]]:
    rows = con.execute(
        "SELECT customer_id, status, reason FROM exports.deliveries WHERE export_key = ? AND as_of = ?", [key, as_of]
    ).fetchall()
    return {c: (s, r) for c, s, r in rows}


EVERYONE = "key: everyone\nrules: {field: customer_id, op: is_not_null}\n"


def test_suppression_per_channel(tmp_path: Path, make_db, one_export) -> None:
    rows = [
        {"customer_id": "ok", "email": "ok@x.io", "consent_email": True, "consent_sms": True},
        {"customer_id": "no_consent", "consent_email": False, "consent_sms": True},
        {"customer_id": "unknown_consent", "consent_sms": True},  # null consent is not consent
        {"customer_id": "unsub_email", "consent_email": True, "unsubscribed_email": True, "consent_sms": True},
        {"customer_id": "complained", "consent_email": True, "complained": True, "consent_sms": True},
        {"customer_id": "unsub_sms", "consent_email": True, "unsubscribed_sms": True, "consent_sms": True},
    ]
    con, segments = make_db(tmp_path, rows, EVERYONE, D1)
    email = one_export(
        tmp_path,
        {"key": "mail", "segment": "everyone", "channel": "email", "campaign": "c", "destination": {"type": "csv"}},
        segments,
    )
    sms = one_export(
        tmp_path,
        {"key": "text", "segment": "everyone", "channel": "sms", "campaign": "c", "destination": {"type": "csv"}},
        segments,
    )
    run_export(con, email, D1, tmp_path / "out", "r1")
    run_export(con, sms, D1, tmp_path / "out", "r1")
    assert read_ids(tmp_path / "out/mail/2024-05-01.csv") == ["ok", "unsub_sms"]
    assert read_ids(tmp_path / "out/text/2024-05-01.csv") == [
        "complained",
        "no_consent",
        "ok",
        "unknown_consent",
        "unsub_email",
    ]
    assert log(con, "mail", D1) == {
        "ok": ("sent", None),
        "unsub_sms": ("sent", None),
        "no_consent": ("suppressed", "no_consent"),
        "unknown_consent": ("suppressed", "no_consent"),
        "unsub_email": ("suppressed", "unsubscribed"),
        "complained": ("suppressed", "complained"),
    }
    # The blocking check (a segment without arms: its members are not read) finds what the log got wrong.
    assert not arm_recorded(con, "everyone", D1, "control")
    assert suppressed_sent(con, email, D1) == 0 and suppressed_sent(con, sms, D1) == 0
    con.execute("UPDATE exports.deliveries SET status = 'sent' WHERE export_key = 'mail' AND customer_id <> 'ok'")
    assert suppressed_sent(con, email, D1) == 4  # no_consent, unknown_consent, unsub_email, complained


def test_control_group_is_held_back_but_recorded(tmp_path: Path, make_db, one_export) -> None:
    rows = [{"customer_id": f"c{i:03d}", "consent_email": True} for i in range(200)]
    con, segments = make_db(
        tmp_path,
        rows,
        EVERYONE + "---\nkey: test\nfrom: {union: [everyone]}\nsplit: {control: 20%, salt: s1}\n",
        D1,
    )
    export = one_export(
        tmp_path,
        {"key": "mail", "segment": "test", "channel": "email", "campaign": "c", "destination": {"type": "csv"}},
        segments,
    )
    result = run_export(con, export, D1, tmp_path / "out", "r1")
    arms = dict(con.execute("SELECT customer_id, arm FROM segments.membership WHERE segment_key = 'test'").fetchall())
    control = {c for c, a in arms.items() if a == "control"}
    assert 20 < len(control) < 60  # about 20 % of 200
    sent = set(read_ids(tmp_path / "out/mail/2024-05-01.csv"))
    assert sent == set(arms) - control
    assert {c for c, (s, _) in log(con, "mail", D1).items() if s == "held_back"} == control
    assert result.counts["held_back"] == len(control)
    # The blocking check's query finds nothing wrong, and does find a control customer logged as sent.
    assert arm_recorded(con, "test", D1, "control") and not arm_recorded(con, "everyone", D1, "control")
    assert suppressed_sent(con, export, D1) == 0
    con.execute(
        "UPDATE exports.deliveries SET status = 'sent' WHERE customer_id = ? AND export_key = 'mail'",
        [sorted(control)[0]],
    )
    assert suppressed_sent(con, export, D1) == 1


def test_an_arm_export_reaches_only_that_arm(tmp_path: Path, make_db, one_export) -> None:
    rows = [{"customer_id": f"c{i:03d}", "consent_email": True} for i in range(100)]
    con, segments = make_db(
        tmp_path,
        rows,
        EVERYONE + "---\nkey: ab\nfrom: {union: [everyone]}\nsplit: {arms: {a: 50, b: 50}, salt: s}\n",
        D1,
    )
    export = one_export(
        tmp_path,
        {
            "key": "only_b",
            "segment": {"segment": "ab", "arm": "b"},
            "channel": "email",
            "campaign": "c",
            "destination": {"type": "csv"},
        },
        segments,
    )
    run_export(con, export, D1, tmp_path / "out", "r1")
    arms = dict(con.execute("SELECT customer_id, arm FROM segments.membership WHERE segment_key = 'ab'").fetchall())
    assert read_ids(tmp_path / "out/only_b/2024-05-01.csv") == sorted(c for c, a in arms.items() if a == "b")


def test_frequency_cap_counts_messages_and_earlier_exports(
    tmp_path: Path, make_db, one_export, record_segments
) -> None:
    rows = [{"customer_id": c, "consent_email": True} for c in ("two_emails", "one_email", "two_sms", "old_emails")]
    con, segments = make_db(tmp_path, rows, EVERYONE, D1)
    messages = [
        ("two_emails", "email", "2024-04-30 10:00:00"),
        ("two_emails", "email", "2024-04-25 00:00:00"),
        ("one_email", "email", "2024-05-01 23:59:59"),
        ("two_sms", "sms", "2024-04-30 10:00:00"),
        ("two_sms", "sms", "2024-04-30 11:00:00"),
        ("old_emails", "email", "2024-04-24 23:59:59"),
        ("old_emails", "email", "2024-04-20 10:00:00"),
        ("one_email", "email", "2024-05-02 00:00:00"),  # after the as-of day: not counted on D1
    ]
    for i, (cid, channel, sent_at) in enumerate(messages):
        con.execute(
            "INSERT INTO marts.fct_messages (message_id, customer_id, channel, sent_at) VALUES (?, ?, ?, ?)",
            [f"m{i}", cid, channel, datetime.fromisoformat(sent_at)],
        )
    export = one_export(
        tmp_path,
        {
            "key": "mail",
            "segment": "everyone",
            "channel": "email",
            "campaign": "c",
            "destination": {"type": "csv"},
            "frequency_cap": {"max": 2, "per": "7d"},
        },
        segments,
    )
    # D1's 7 days: 2024-04-25 00:00 up to 2024-05-02 00:00.
    run_export(con, export, D1, tmp_path / "out", "r1")
    assert read_ids(tmp_path / "out/mail/2024-05-01.csv") == ["old_emails", "one_email", "two_sms"]
    assert log(con, "mail", D1)["two_emails"] == ("suppressed", "frequency_cap")
    # D2's window starts 2024-04-26: one_email has two messages plus the D1 export (3, capped); two_emails
    # keeps one message (its D1 send was capped, so no export); old_emails and two_sms have one export each.
    record_segments(con, segments, D2)
    run_export(con, export, D2, tmp_path / "out", "r2")
    assert read_ids(tmp_path / "out/mail/2024-05-02.csv") == ["old_emails", "two_emails", "two_sms"]
    assert log(con, "mail", D2)["one_email"] == ("suppressed", "frequency_cap")
    # Re-running D2 does not count D2's own first run against itself.
    run_export(con, export, D2, tmp_path / "out", "r3")
    assert read_ids(tmp_path / "out/mail/2024-05-02.csv") == ["old_emails", "two_emails", "two_sms"]


def test_delta_mode_over_three_partitions_sends_exactly_the_changes(
    tmp_path: Path, make_db, one_export, set_features, record_segments
) -> None:
    def features(members: set[str]) -> list[dict]:
        return [
            {"customer_id": c, "consent_email": True, "total_amount": 100.0 if c in members else 0.0, "city": c.upper()}
            for c in "abcdef"
        ]

    con, segments = make_db(
        tmp_path, features({"a", "b", "c"}), "key: big\nrules: {field: total_amount, op: '>', value: 50}\n", D1
    )
    export = one_export(
        tmp_path,
        {
            "key": "sync",
            "segment": "big",
            "channel": "email",
            "campaign": "c",
            "mode": "delta",
            "destination": {"type": "csv"},
            "fields": {"customer_id": "customer_id", "city": "city"},
        },
        segments,
    )

    def actions(day: date) -> list[tuple[str, str, str]]:
        with (tmp_path / f"out/sync/{day.isoformat()}.csv").open() as f:
            return sorted((r["customer_id"], r["action"], r["city"]) for r in csv.DictReader(f))

    run_export(con, export, D1, tmp_path / "out", "r1")
    assert actions(D1) == [("a", "add", "A"), ("b", "add", "B"), ("c", "add", "C")]
    set_features(con, features({"b", "c", "d"}))
    record_segments(con, segments, D2)
    run_export(con, export, D2, tmp_path / "out", "r2")
    assert actions(D2) == [("a", "remove", "A"), ("d", "add", "D")]  # removals carry the row as exported
    set_features(con, features({"d", "e"}))
    record_segments(con, segments, D3)
    run_export(con, export, D3, tmp_path / "out", "r3")
    assert actions(D3) == [("b", "remove", "B"), ("c", "remove", "C"), ("e", "add", "E")]
    at_destination = con.execute("SELECT customer_id FROM exports.audience WHERE export_key='sync' ORDER BY 1")
    assert [r[0] for r in at_destination.fetchall()] == ["d", "e"]


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"segment": "ghost"}, "segment: unknown segment 'ghost'"),
        ({"segment": {"segment": "everyone", "arm": "b"}}, "segment.arm: segment 'everyone' has no arm 'b'"),
        ({"fields": {"x": "no_such_feature"}}, "fields.x: unknown feature 'no_such_feature'"),
        ({"destination": {"type": "ftp"}}, "destination: Input tag 'ftp' found using 'type' does not match"),
        (
            {"destination": {"type": "csv", "path": "../../etc/x.csv"}},
            "destination.path: path must stay inside ACRM_OUTBOX_DIR",
        ),
        ({"destination": {"type": "google_customer_match"}}, "a google_customer_match export uses channel: ads"),
        ({"destination": {"type": "bonus", "points": 5}, "mode": "delta"}, "bonus is exactly once per customer"),
        (
            {"destination": {"type": "postgres", "table": "t", "dsn_env": "postgres://u:p@h/db"}},
            "destination.dsn_env: dsn_env names an environment variable ACRM_POSTGRES_DSN or ACRM_POSTGRES_DSN_<NAME>",
        ),
        ({"frequency_cap": {"max": 0, "per": "7d"}}, "frequency_cap.max: Input should be greater than or equal to 1"),
    ],
)
def test_export_validation_names_the_field(tmp_path: Path, definition: dict, message: str, make_db, export_set) -> None:
    con, segments = make_db(tmp_path, [{"customer_id": "a"}], EVERYONE, D1)
    base = {"key": "e", "segment": "everyone", "channel": "email", "campaign": "c", "destination": {"type": "csv"}}
    with pytest.raises(DefinitionErrors) as info:
        export_set(tmp_path, [{**base, **definition}], segments)
    assert message in str(info.value), str(info.value)
    assert "e.yaml:" in str(info.value)
