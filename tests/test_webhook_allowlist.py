"""Webhook hosts: loopback by default, anything else listed in ACRM_WEBHOOK_ALLOWED_HOSTS; checked twice.

At validation the URL's host must be loopback or listed (and the URL plain http(s) without credentials).
When sending, the host is checked again against what its name resolves to, and the connection goes to
the checked addresses. Deliveries go to a real HTTP receiver on 127.0.0.1; no test sends traffic anywhere
else: DNS answers are stood in for (`webhook.resolve`), and `socket.create_connection` refuses any
address but 127.0.0.1, recording every attempt.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from acrm_pipelines.exports.destinations import DeliveryFailed, webhook
from acrm_pipelines.exports.destinations.webhook import HostRefused, checked_addresses
from acrm_pipelines.exports.run import run_export
from acrm_pipelines.exports.validate import load_exports
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.settings import Settings
from acrm_pipelines.yaml_specs import DefinitionErrors

DAY = date(2024, 3, 1)
ENV = "ACRM_WEBHOOK_ALLOWED_HOSTS"
SEGMENT = "key: buyers\nrules: {field: total_amount, op: '>=', value: 50}\n"
NOT_ALLOWED = "is not allowed: add it to ACRM_WEBHOOK_ALLOWED_HOSTS (only loopback hosts are allowed without it)"


@pytest.fixture(autouse=True)
def no_allowed_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


@dataclass
class Receiver:
    url: str = ""
    port: int = 0
    bodies: list[dict] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)  # the Host header of each request


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self.server.receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.server.receiver.hosts.append(self.headers["Host"])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the signature of the base class
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.receiver = Receiver(url=f"http://127.0.0.1:{port}/hook", port=port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a TCP connection was attempted to; only 127.0.0.1 is actually connected."""
    attempted: list[str] = []
    real = socket.create_connection

    def guarded(address, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - socket's signature
        attempted.append(address[0])
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"test: no traffic to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return attempted


def dns(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> list[str]:
    """Stand in for DNS: the n-th lookup gets answers[n] (the last one from then on); returns the names asked."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    monkeypatch.setattr(webhook, "resolve", resolve)
    return asked


# --- validation -------------------------------------------------------------------------------------------


def export_yaml(url: str) -> str:
    return (
        "key: hook\n"
        "segment: buyers\n"
        "channel: email\n"
        "campaign: c\n"
        "destination:\n"
        "  type: webhook\n"
        f"  url: '{url}'\n"  # line 7
    )


@pytest.fixture
def validate(segment_set):
    """`validate(tmp_path, url, allowed_hosts=None)`: the exports of a webhook export to `url`, validated."""

    def validate(tmp_path: Path, url: str, allowed_hosts: list[str] | None = None):
        segments = segment_set(tmp_path, SEGMENT)
        folder = tmp_path / "exports"
        folder.mkdir(exist_ok=True)
        (folder / "e.yaml").write_text(export_yaml(url))
        return load_exports([folder], segments, load_catalogue(), root=folder, allowed_hosts=allowed_hosts)

    return validate


@pytest.fixture
def validation_errors(validate):
    """`validation_errors(tmp_path, url)`: the errors validating a webhook export to `url` raises."""

    def validation_errors(tmp_path: Path, url: str) -> list[str]:
        with pytest.raises(DefinitionErrors) as info:
            validate(tmp_path, url)
        return [str(e) for e in info.value.errors]

    return validation_errors


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),  # link-local: cloud metadata
        ("http://10.0.0.1/hook", "10.0.0.1"),
        ("http://172.16.5.4:8080/hook", "172.16.5.4"),
        ("http://192.168.1.1/hook", "192.168.1.1"),
        ("http://[fe80::1]/hook", "fe80::1"),
        ("http://[fc00::1]/hook", "fc00::1"),
        ("http://[::ffff:10.0.0.1]/hook", "::ffff:10.0.0.1"),  # IPv4-mapped, still 10.0.0.1
        ("https://hooks.example.com/crm", "hooks.example.com"),  # an unlisted public-looking name
        ("http://2130706433/hook", "2130706433"),  # a name to the resolver, whatever it turns into
        ("http://localhost.example.com/hook", "localhost.example.com"),
    ],
)
def test_hosts_that_are_not_loopback_need_listing(tmp_path: Path, url: str, host: str, validation_errors) -> None:
    assert validation_errors(tmp_path, url) == [f"e.yaml:7: destination.url: host {host} {NOT_ALLOWED}"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "url scheme 'file' is not allowed: use http:// or https://"),
        ("gopher://127.0.0.1:25/", "url scheme 'gopher' is not allowed: use http:// or https://"),
        ("//127.0.0.1/hook", "url scheme '(none)' is not allowed: use http:// or https://"),
        (
            "http://user:secret@127.0.0.1/hook",
            "url must not contain credentials (user:password@): put a token in the variable named by token_env",
        ),
        (
            "http://127.0.0.1\\@10.0.0.1/hook",  # parsers differ on where the host is; it has an @ anyway
            "url must not contain credentials (user:password@): put a token in the variable named by token_env",
        ),
        ("http:///hook", "url has no host"),
        ("http://127.0.0.1 /hook", "url must not contain spaces or control characters"),
        ("http://127.0.0.1:99999/hook", "url is not valid: Port out of range 0-65535"),
    ],
)
def test_urls_refused_whatever_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str, validation_errors
):
    monkeypatch.setenv(ENV, "127.0.0.1,10.0.0.1")
    assert validation_errors(tmp_path, url) == [f"e.yaml:7: destination.url: {message}"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.3.2.1/hook",  # all of 127.0.0.0/8
        "http://[::1]:8080/hook",
        "http://localhost:8080/hook",
        "HTTPS://LocalHost./hook",
    ],
)
def test_loopback_is_allowed_by_default(tmp_path: Path, url: str, validate) -> None:
    assert validate(tmp_path, url)["hook"].destination.url == url


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/crm",
        "https://HOOKS.Example.COM./crm",
        "http://10.0.0.1/hook",
        "http://[fe80::1]:8080/hook",
        "http://169.254.169.254/",
    ],
)
def test_listing_a_host_makes_it_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, validate) -> None:
    with pytest.raises(DefinitionErrors):
        validate(tmp_path, url)
    monkeypatch.setenv(ENV, " hooks.example.com , 10.0.0.1,fe80::1, 169.254.169.254")
    assert Settings.from_env().webhook_allowed_hosts == ("hooks.example.com", "10.0.0.1", "fe80::1", "169.254.169.254")
    assert validate(tmp_path, url)["hook"].destination.url == url


def test_a_listed_name_does_not_allow_its_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, validation_errors
) -> None:
    monkeypatch.setenv(ENV, "hooks.example.com,10.0.0.1")
    for url, host in [("https://evil.hooks.example.com/", "evil.hooks.example.com"), ("http://10.0.0.2/", "10.0.0.2")]:
        assert validation_errors(tmp_path, url) == [f"e.yaml:7: destination.url: host {host} {NOT_ALLOWED}"]


@pytest.mark.parametrize("value", ["https://hooks.example.com", "hooks.example.com:443", "a b", "x/y"])
def test_the_setting_takes_bare_hosts(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ValueError, match=f"{ENV}: expected host names or IP addresses separated by commas"):
        Settings.from_env()


# --- sending ----------------------------------------------------------------------------------------------


def rows() -> list[dict]:
    return [
        {"customer_id": f"c{i}", "email": f"c{i}@example.org", "total_amount": 100.0, "consent_email": True}
        for i in range(5)
    ]


@pytest.fixture
def webhook_export(make_db, one_export):
    """`webhook_export(tmp_path, url, monkeypatch, listed_at_validation="")`: (connection, export);
    `listed_at_validation` is in the setting while validating only, as on another host."""

    def webhook_export(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, listed_at_validation: str = ""):
        con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
        if listed_at_validation:
            monkeypatch.setenv(ENV, listed_at_validation)
        definition = {
            "key": "hook",
            "segment": "buyers",
            "channel": "email",
            "campaign": "c",
            "destination": {"type": "webhook", "url": url, "max_attempts": 1, "timeout_seconds": 5},
        }
        export = one_export(tmp_path, definition, segments)
        monkeypatch.delenv(ENV, raising=False)
        return con, export

    return webhook_export


def test_loopback_still_delivers(
    tmp_path: Path, receiver: Receiver, connections: list[str], make_db, one_export
) -> None:
    con, segments = make_db(tmp_path, rows(), SEGMENT, DAY)
    export = one_export(
        tmp_path,
        {
            "key": "hook",
            "segment": "buyers",
            "channel": "email",
            "campaign": "c",
            "destination": {"type": "webhook", "url": receiver.url},
        },
        segments,
    )
    result = run_export(con, export, DAY, tmp_path / "outbox", "run-1")
    assert result.counts["sent"] == 5
    assert sorted(r["customer_id"] for b in receiver.bodies for r in b["rows"]) == [f"c{i}" for i in range(5)]
    assert connections == ["127.0.0.1"]


def test_an_unlisted_name_resolving_to_loopback_is_sent_to_the_checked_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver, connections: list[str], webhook_export
) -> None:
    asked = dns(monkeypatch, ["127.0.0.1"])
    url = f"http://hooks.internal.test:{receiver.port}/hook"
    con, export = webhook_export(tmp_path, url, monkeypatch, listed_at_validation="hooks.internal.test")
    result = run_export(con, export, DAY, tmp_path / "outbox", "run-1")
    assert result.counts["sent"] == 5
    assert asked == ["hooks.internal.test", "hooks.internal.test"]  # before sending, and when connecting
    assert connections == ["127.0.0.1"]
    assert receiver.hosts == [f"hooks.internal.test:{receiver.port}"]  # the name is kept in the request


@pytest.mark.parametrize("answer", [["10.0.0.1"], ["127.0.0.1", "169.254.169.254"], ["fe80::1"], []])
def test_an_unlisted_name_resolving_elsewhere_is_refused_without_sending(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: Receiver,
    connections: list[str],
    answer: list[str],
    webhook_export,
) -> None:
    dns(monkeypatch, answer)
    url = f"http://hooks.internal.test:{receiver.port}/hook"
    con, export = webhook_export(tmp_path, url, monkeypatch, listed_at_validation="hooks.internal.test")
    outside = ", ".join(a for a in answer if a != "127.0.0.1") or "nothing"
    with pytest.raises(DeliveryFailed) as failed:
        run_export(con, export, DAY, tmp_path / "outbox", "run-1")
    assert str(failed.value) == (
        f"export hook: host hooks.internal.test resolves to {outside}, not loopback: "
        "add it to ACRM_WEBHOOK_ALLOWED_HOSTS; nothing was sent"
    )
    assert connections == [] and receiver.bodies == []


def test_dns_rebinding_after_the_check_is_refused_at_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver, connections: list[str], webhook_export
) -> None:
    asked = dns(monkeypatch, ["127.0.0.1"], ["10.0.0.1"])
    url = f"http://hooks.internal.test:{receiver.port}/hook"
    con, export = webhook_export(tmp_path, url, monkeypatch, listed_at_validation="hooks.internal.test")
    with pytest.raises(DeliveryFailed, match="resolves to 10.0.0.1, not loopback") as failed:
        run_export(con, export, DAY, tmp_path / "outbox", "run-1")
    assert "0 rows were delivered before, the rest was not sent" in str(failed.value)
    assert len(asked) == 2 and connections == [] and receiver.bodies == []


def test_an_address_listed_only_where_it_was_validated_is_refused_when_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connections: list[str], webhook_export
) -> None:
    asked = dns(monkeypatch, ["127.0.0.1"])
    con, export = webhook_export(tmp_path, "http://10.0.0.1:9/hook", monkeypatch, listed_at_validation="10.0.0.1")
    with pytest.raises(DeliveryFailed) as failed:
        run_export(con, export, DAY, tmp_path / "outbox", "run-1")
    assert str(failed.value) == (
        "export hook: host 10.0.0.1 is not allowed: add it to ACRM_WEBHOOK_ALLOWED_HOSTS; nothing was sent"
    )
    assert asked == [] and connections == []


def test_checked_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = dns(monkeypatch, ["127.0.0.1", "::1"])
    assert checked_addresses("127.0.0.7", 80, []) == ["127.0.0.7"]
    assert checked_addresses("::1", 80, []) == ["::1"]
    assert checked_addresses("10.0.0.1", 80, ["10.0.0.1"]) == ["10.0.0.1"]
    assert checked_addresses("hooks.example.com", 443, ["HOOKS.example.com"]) == ["hooks.example.com"]
    assert asked == []  # listed names and addresses are connected to as written
    assert checked_addresses("localhost", 80, []) == ["127.0.0.1", "::1"]
    for host in ("10.0.0.1", "192.168.1.1", "fe80::1", "169.254.169.254"):
        with pytest.raises(HostRefused, match=f"host {host} is not allowed"):
            checked_addresses(host, 80, ["hooks.example.com"])

    def no_such_name(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(webhook, "resolve", no_such_name)
    with pytest.raises(HostRefused, match="host nowhere.test does not resolve"):
        checked_addresses("nowhere.test", 80, [])
