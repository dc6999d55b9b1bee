"""Canary secrets never appear in an error, a log record, the delivery log or a Dagster run's event log.

Canary values are put where secrets live: a webhook URL's query string and a token-like path segment, a
token variable (`token_env`) and a DSN variable (`dsn_env`). Deliveries then fail the way they do in
production: a closed port on 127.0.0.1, an HTTP 500 from a real local receiver that echoes what it got, a
4xx whose reason echoes the token, a redirect whose Location carries the token to another host, and DSNs
that do not parse or reach no server. Every message is collected: the exception and its causes (as Dagster
records them), every log record (caplog, DEBUG, every logger: httpx logs each request's URL), stdout and
stderr, the rows of exports.runs and exports.deliveries, and the serialized event log of a Dagster run of
the export asset.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, DailyPartitionsDefinition, materialize
from dagster_duckdb import DuckDBResource
from dagster_shared.serdes import serialize_value
from psycopg.conninfo import conninfo_to_dict

from acrm_pipelines.components.exports import build_export_asset
from acrm_pipelines.exports.destinations import DeliveryFailed
from acrm_pipelines.exports.run import run_export
from acrm_pipelines.exports.spec import Export, PostgresDestination, WebhookDestination
from acrm_pipelines.exports.validate import load_exports
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.settings import Settings
from acrm_pipelines.yaml_specs import DefinitionErrors

DAY = date(2024, 3, 1)
SEGMENT = "key: buyers\nrules: {field: total_amount, op: '>=', value: 50}\n"
CANARY_QUERY = "CANARYq7f3a91e"
CANARY_PATH = "CANARYs1a2b3c4d5e6f7g8h9"  # a Slack-style secret path segment
CANARY_TOKEN = "CANARYt4b8e22c"
CANARY_PASSWORD = "CANARYp9c1d55a"
CANARY_DSN = "CANARYd0e6f13b"  # pieces of a DSN that libpq quotes in its parse errors
CANARIES = (CANARY_QUERY, CANARY_PATH, CANARY_TOKEN, CANARY_PASSWORD, CANARY_DSN)
TOKEN_ENV = "ACRM_SECRET_CANARY_TOKEN"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("ACRM_WEBHOOK_ALLOWED_HOSTS", raising=False)
    monkeypatch.setenv(TOKEN_ENV, CANARY_TOKEN)
    monkeypatch.setenv("ACRM_POSTGRES_DSN", f"postgresql://acrm:{CANARY_PASSWORD}@127.0.0.1:{closed_port()}/crm")
    caplog.set_level(logging.DEBUG)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


# --- a receiver that echoes everything it was sent ----------------------------------------------------------


@dataclass
class Receiver:
    host: str
    port: int
    status: int = 500
    location: str | None = None
    padding: str = ""  # put before the echo, to move the token to where a reason is cut
    requests: list[dict] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        rec = self.server.receiver
        self.rfile.read(int(self.headers["Content-Length"]))
        rec.requests.append({"path": self.path, "authorization": self.headers.get("Authorization")})
        # A verbose receiver: its error page repeats the request line and the Authorization header.
        body = f"{rec.padding}cannot take {self.path} with {self.headers.get('Authorization')}".encode()
        self.send_response(rec.status)
        if rec.location:
            self.send_header("Location", rec.location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the signature of the base class
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


def serve(host: str) -> Iterator[Receiver]:
    server = _Server((host, 0), _Handler)
    server.receiver = Receiver(host, server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve("127.0.0.1")


@pytest.fixture
def elsewhere() -> Iterator[Receiver]:
    """Another host (127.0.0.2: loopback, so nothing leaves the machine) that a redirect points to."""
    yield from serve("127.0.0.2")


# --- collecting every place a secret could show up ----------------------------------------------------------


def exception_texts(err: BaseException) -> list[str]:
    """The message of the exception and of every cause or context Dagster would record with it."""
    out: list[str] = []
    seen: BaseException | None = err
    while seen is not None:
        out.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return out


def delivery_log(con: duckdb.DuckDBPyConnection) -> list[str]:
    runs = con.execute("SELECT location, error, counts FROM exports.runs").fetchall()
    reasons = con.execute("SELECT reason, batch_key FROM exports.deliveries").fetchall()
    return [str(v) for row in runs + reasons for v in row]


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        for canary in CANARIES:
            assert canary not in text, f"{canary} leaked in: {text[:400]}"


def assert_nothing_leaked(caplog, capfd, *texts: str) -> None:
    records = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    out, err = capfd.readouterr()
    assert_no_canary(*texts, *records, out, err)


# --- definitions ----------------------------------------------------------------------------------------------


def rows() -> list[dict]:
    return [
        {"customer_id": f"c{i}", "email": f"c{i}@example.org", "total_amount": 100.0, "consent_email": True}
        for i in range(3)
    ]


def definition(destination: dict) -> dict:
    return {"key": "hook", "segment": "buyers", "channel": "email", "campaign": "c", "destination": destination}


def load(tmp: Path, definitions: list[dict], segments):
    folder = tmp / "exports"
    folder.mkdir(exist_ok=True)
    (folder / "e.yaml").write_text("\n---\n".join(json.dumps(d) for d in definitions))  # JSON is YAML
    return load_exports([folder], segments, load_catalogue(), root=folder)


def webhook(url: str, **options) -> dict:
    return {"type": "webhook", "url": url, "max_attempts": 2, "backoff_seconds": 0, "timeout_seconds": 5} | options


def bypassing_validation(export: Export, **destination) -> Export:
    """The export with a destination built in code: validation never saw it (checked again when sending)."""
    kind = WebhookDestination if export.destination.type == "webhook" else PostgresDestination
    built = kind.model_construct(**(export.destination.model_dump() | destination))
    return export.model_copy(update={"destination": built})


def fail(con, export: Export, outbox: Path) -> list[str]:
    with pytest.raises(DeliveryFailed) as failed:
        run_export(con, export, DAY, outbox, "r1")
    return exception_texts(failed.value)


# --- validation: credentials in YAML are refused, without repeating them -------------------------------------

QUERY_NAMES = ["api_key", "apiKey", "key", "token", "access_token", "password", "secret", "client_secret"]
QUERY_NAMES += ["signature", "X-Amz-Signature", "X-Amz-Credential", "sig", "auth", "api%5Fkey"]


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_a_credential_in_the_query_is_refused_pointing_at_token_env(tmp_path: Path, name: str, caplog, capfd, make_db):
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    url = f"http://127.0.0.1:8080/hook?tenant=acme&{name}={CANARY_QUERY}"
    with pytest.raises(DefinitionErrors) as info:
        load(tmp_path, [definition(webhook(url))], segments)
    [error] = [str(e) for e in info.value.errors]
    assert error == (
        f"e.yaml:1: destination.url: url must not carry a credential in its query ({name}=…): put the token in an "
        "environment variable ACRM_SECRET_<NAME> and name it in token_env (sent as a bearer token)"
    )
    assert_nothing_leaked(caplog, capfd, error)


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        (webhook("http://127.0.0.1/hook", token_env="ACRM_POSTGRES_DSN"), "destination.token_env: token_env names"),
        (webhook("http://127.0.0.1/hook", token_env="HOME"), "destination.token_env: token_env names"),
        (webhook("http://127.0.0.1/hook", token_env=CANARY_TOKEN), "destination.token_env: token_env names"),
        ({"type": "postgres", "table": "t", "dsn_env": TOKEN_ENV}, "destination.dsn_env: dsn_env names"),
        ({"type": "postgres", "table": "t", "dsn_env": "PGPASSWORD"}, "destination.dsn_env: dsn_env names"),
        (
            {"type": "postgres", "table": "t", "dsn_env": f"postgresql://u:{CANARY_PASSWORD}@h/db"},
            "destination.dsn_env: dsn_env names",
        ),
        (webhook(f"http://u:{CANARY_PASSWORD}@127.0.0.1/hook"), "destination.url: url must not contain credentials"),
    ],
)
def test_only_the_documented_variables_may_be_named(
    tmp_path: Path, destination: dict, message: str, caplog, capfd, make_db
):
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    with pytest.raises(DefinitionErrors) as info:
        load(tmp_path, [definition(destination)], segments)
    [error] = [str(e) for e in info.value.errors]
    assert error.startswith(f"e.yaml:1: {message}"), error
    assert_nothing_leaked(caplog, capfd, error)


def test_the_documented_names_are_accepted(tmp_path: Path, make_db) -> None:
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    exports = load(
        tmp_path,
        [
            definition(webhook("http://127.0.0.1/hook?tenant=acme", token_env="ACRM_SECRET_HOOK_1")),
            definition({"type": "postgres", "table": "t"}) | {"key": "pg1"},
            definition({"type": "postgres", "table": "t", "dsn_env": "ACRM_POSTGRES_DSN_WAREHOUSE"}) | {"key": "pg2"},
        ],
        segments,
    )
    assert exports["pg1"].destination.dsn_env == "ACRM_POSTGRES_DSN"
    assert exports["pg2"].destination.dsn_env == "ACRM_POSTGRES_DSN_WAREHOUSE"


# --- sending: every realistic failure, nothing leaks -----------------------------------------------------------


def test_a_closed_port_with_a_token(tmp_path: Path, caplog, capfd, make_db) -> None:
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    url = f"http://127.0.0.1:{closed_port()}/hooks/{CANARY_PATH}"
    export = load(tmp_path, [definition(webhook(url, token_env=TOKEN_ENV))], segments)["hook"]
    texts = fail(con, export, tmp_path / "outbox")
    assert "failed 2 times (last: ConnectError)" in texts[0] and "/hooks/***" in texts[0]
    assert_nothing_leaked(caplog, capfd, *texts, *delivery_log(con))


def test_an_http_500_from_a_receiver_that_echoes_the_token(tmp_path: Path, receiver: Receiver, caplog, capfd, make_db):
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    export = load(tmp_path, [definition(webhook(receiver.url(f"/hooks/{CANARY_PATH}"), token_env=TOKEN_ENV))], segments)
    texts = fail(con, export["hook"], tmp_path / "outbox")
    assert texts[0].startswith(f"DeliveryFailed: export hook: http://127.0.0.1:{receiver.port}/hooks/*** failed 2")
    assert [r["authorization"] for r in receiver.requests] == [f"Bearer {CANARY_TOKEN}"] * 2  # it was sent
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)  # httpx's own log, redacted
    assert_nothing_leaked(caplog, capfd, *texts, *delivery_log(con))


def test_a_4xx_reason_that_echoes_the_token_is_kept_without_it(
    tmp_path: Path, receiver: Receiver, caplog, capfd, make_db
):
    receiver.status = 401
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    export = load(tmp_path, [definition(webhook(receiver.url(f"/hooks/{CANARY_PATH}"), token_env=TOKEN_ENV))], segments)
    result = run_export(con, export["hook"], DAY, tmp_path / "outbox", "r1")
    assert result.counts["rejected"] == 3 and result.location == f"http://127.0.0.1:{receiver.port}/hooks/***"
    [(reason,)] = con.execute("SELECT DISTINCT reason FROM exports.deliveries").fetchall()
    assert reason == "HTTP 401: cannot take /hooks/*** with Bearer ***"
    assert_nothing_leaked(caplog, capfd, *delivery_log(con), json.dumps(result.counts))


def test_a_token_cut_by_the_reasons_length_limit_is_still_hidden(
    tmp_path: Path, receiver: Receiver, caplog, capfd, make_db
):
    receiver.status = 422
    receiver.padding = "x" * (200 - len("cannot take /hook with Bearer ") - 5)  # the cut falls inside the token
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    export = load(tmp_path, [definition(webhook(receiver.url(), token_env=TOKEN_ENV))], segments)
    run_export(con, export["hook"], DAY, tmp_path / "outbox", "r1")
    [(reason,)] = con.execute("SELECT DISTINCT reason FROM exports.deliveries").fetchall()
    assert reason.startswith("HTTP 422: xxx") and reason.endswith("with Bearer ***")
    assert CANARY_TOKEN[:5] not in reason
    assert_nothing_leaked(caplog, capfd, *delivery_log(con))


def test_a_redirect_to_another_host_is_not_followed(
    tmp_path: Path, receiver: Receiver, elsewhere: Receiver, caplog, capfd, make_db
) -> None:
    receiver.status = 307
    receiver.location = elsewhere.url(f"/steal?token={CANARY_TOKEN}")
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    export = load(tmp_path, [definition(webhook(receiver.url(), token_env=TOKEN_ENV, max_attempts=5))], segments)
    texts = fail(con, export["hook"], tmp_path / "outbox")
    assert texts[0] == (
        f"DeliveryFailed: export hook: {receiver.url()} answered HTTP 307 (a redirect to "
        f"{elsewhere.url('/steal?token=***')}); redirects are not followed: put the final URL in the definition; "
        "0 rows were delivered before"
    )
    assert len(receiver.requests) == 1  # not retried: a redirect will not go away
    assert elsewhere.requests == []  # and not followed: the token never reached the other host
    assert_nothing_leaked(caplog, capfd, *texts, *delivery_log(con))


def test_a_url_with_a_credential_that_skipped_validation_is_refused_before_sending(
    tmp_path: Path, receiver: Receiver, caplog, capfd, make_db
) -> None:
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    export = load(tmp_path, [definition(webhook(receiver.url()))], segments)["hook"]
    for url in (receiver.url(f"/hook?api_key={CANARY_QUERY}"), f"http://u:{CANARY_PASSWORD}@127.0.0.1:1/h"):
        texts = fail(con, bypassing_validation(export, url=url), tmp_path / "outbox")
        assert texts[0].startswith("DeliveryFailed: export hook: destination.url: url must not"), texts[0]
        assert texts[0].endswith("; nothing was sent")
    assert receiver.requests == []
    assert_nothing_leaked(caplog, capfd, *delivery_log(con))


def test_a_token_env_naming_the_dsn_is_refused_when_sending(tmp_path: Path, receiver: Receiver, caplog, capfd, make_db):
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    export = load(tmp_path, [definition(webhook(receiver.url()))], segments)["hook"]
    texts = fail(con, bypassing_validation(export, token_env="ACRM_POSTGRES_DSN"), tmp_path / "outbox")
    assert texts[0].startswith("DeliveryFailed: export hook: destination.token_env: token_env names")
    assert receiver.requests == []  # the DSN was not sent as a bearer token
    assert_nothing_leaked(caplog, capfd, *texts, *delivery_log(con))


NOT_A_DSN = (
    "environment variable ACRM_POSTGRES_DSN_CANARY is not a PostgreSQL connection string "
    "(key=value pairs or a postgresql:// URL); its value is not shown"
)
UNREACHABLE = "PostgreSQL table crm.audience: OperationalError: connection"


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        # libpq quotes the part it could not parse
        (f"host=127.0.0.1 password={CANARY_PASSWORD} {CANARY_DSN}", NOT_A_DSN),
        (CANARY_DSN, NOT_A_DSN),
        (f"postgresql://u:{CANARY_PASSWORD}@127.0.0.1/db?{CANARY_DSN}=1", NOT_A_DSN),
        (f"host=127.0.0.1 {CANARY_DSN}=1", NOT_A_DSN),
        # parses, reaches nothing
        (f"postgresql://acrm:{CANARY_PASSWORD}@127.0.0.1:<PORT>/crm?connect_timeout=5", UNREACHABLE),
        (f"host=127.0.0.1 port=<PORT> user=acrm password='{CANARY_PASSWORD}' connect_timeout=5", UNREACHABLE),
    ],
)
def test_a_bad_or_unreachable_dsn(tmp_path: Path, monkeypatch, dsn: str, expected: str, caplog, capfd, make_db) -> None:
    monkeypatch.setenv("ACRM_POSTGRES_DSN_CANARY", dsn.replace("<PORT>", str(closed_port())))
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    pg = {"type": "postgres", "table": "crm.audience", "dsn_env": "ACRM_POSTGRES_DSN_CANARY"}
    texts = fail(con, load(tmp_path, [definition(pg)], segments)["hook"], tmp_path / "outbox")
    assert texts[0].startswith(f"DeliveryFailed: export hook: {expected}"), texts[0]
    assert len(texts) == 1  # no psycopg cause chained: Dagster would record its text
    assert_nothing_leaked(caplog, capfd, *texts, *delivery_log(con))


def test_a_real_server_refusing_the_connection(
    tmp_path: Path, monkeypatch, postgres_dsn, caplog, capfd, make_db
) -> None:
    """The test server, a database that does not exist, a canary password (trust auth ignores it)."""
    info = psycopg_info(postgres_dsn)
    dsn = f"postgresql://{info['user']}:{CANARY_PASSWORD}@{info['host']}:{info['port']}/no_such_db"
    monkeypatch.setenv("ACRM_POSTGRES_DSN", dsn)
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    pg = {"type": "postgres", "table": "crm.audience"}
    texts = fail(con, load(tmp_path, [definition(pg)], segments)["hook"], tmp_path / "outbox")
    assert "no_such_db" in texts[0] and "does not exist" in texts[0]
    assert_nothing_leaked(caplog, capfd, *texts, *delivery_log(con))


def psycopg_info(dsn: str) -> dict[str, str]:
    params = conninfo_to_dict(dsn)
    return {"user": str(params.get("user", "postgres")), "host": str(params["host"]), "port": str(params["port"])}


def test_a_dagster_run_of_the_export_asset_records_no_secret(
    tmp_path: Path, receiver: Receiver, caplog, capfd, make_db
):
    """Through the project's own asset: the failure event, its error chain, logs and metadata of the run."""
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    con.close()  # the asset opens the file through its DuckDB resource
    url = receiver.url(f"/hooks/{CANARY_PATH}")
    export = load(tmp_path, [definition(webhook(url, token_env=TOKEN_ENV))], segments)["hook"]
    settings = dataclasses.replace(
        Settings.from_env(), outbox_dir=tmp_path / "outbox", duckdb_path=tmp_path / "db.duckdb"
    )
    asset = build_export_asset(export, "e.yaml", settings, DailyPartitionsDefinition(start_date="2024-01-01"))
    instance = DagsterInstance.ephemeral()

    result = materialize(
        [asset],
        instance=instance,
        resources={"duckdb": DuckDBResource(database=str(settings.duckdb_path))},
        partition_key=DAY.isoformat(),
        raise_on_error=False,
    )

    assert not result.success
    events = instance.all_logs(result.run_id)
    failures = [e for e in events if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"]
    assert failures and "/hooks/*** failed 2 times" in serialize_value(failures[0])
    assert len(receiver.requests) == 2
    assert_nothing_leaked(caplog, capfd, *(serialize_value(e) for e in events))


def test_redact() -> None:
    from acrm_pipelines.exports.spec import redact, redact_url  # here: the other tests also run on older code

    assert redact_url(f"https://u:{CANARY_PASSWORD}@h.example:8443/a/{CANARY_PATH}/b?x=1&{CANARY_DSN}#frag") == (
        "https://***@h.example:8443/a/***/b?x=***&***#***"
    )
    assert redact(f"see http://h/x?token={CANARY_TOKEN}, then host=h password={CANARY_PASSWORD} port=5") == (
        "see http://h/x?token=***, then host=h password=*** port=5"
    )
    assert redact(f"got {CANARY_TOKEN!r}", [CANARY_TOKEN, None, ""]) == "got '***'"
