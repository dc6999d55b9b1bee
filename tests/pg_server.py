"""A throwaway PostgreSQL server for tests: initdb in a temp folder, started on 127.0.0.1 and a free port.

The server is the Debian package's (`/usr/lib/postgresql/<version>/bin`, installed by `make system-deps`).
PostgreSQL refuses to run as root, so under root the data folder belongs to the `postgres` OS user and
every server command runs as that user (`runuser`, else `su`); otherwise it runs as the current user.
Authentication is `trust`: the server listens on 127.0.0.1 only and lives as long as the test session.

tests/conftest.py registers this module as a plugin (`pytest_plugins`): a test or fixture asks for
`postgres_dsn` like any fixture.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"  # the OS user the server runs as under root (created by the Debian package)
SUPERUSER = "postgres"  # the database superuser initdb creates
DATABASE = "acrm_test"
INSTALL_HINT = "run `make system-deps` (as root it installs the Debian package postgresql)"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or the server could not be started."""


def find_pg_bin() -> Path | None:
    """The bin folder of the newest installed PostgreSQL with initdb and pg_ctl, or None."""

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)

    for folder in sorted(glob.glob(PG_BIN_GLOB), key=version, reverse=True):
        if all(os.access(Path(folder) / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    """`cmd` as run by the server's OS user: itself when not root, `postgres` under root."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser") or ("/usr/sbin/runuser" if os.access("/usr/sbin/runuser", os.X_OK) else None)
    if runuser:
        return [runuser, "-u", SERVER_USER, "--", *cmd]
    return ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(cmd)]


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> None:
    proc = subprocess.run(
        _as_server_user(cmd),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LC_ALL": "C", "LANG": "C"},
    )
    if proc.returncode != 0:
        raise PostgresUnavailable(
            f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}".rstrip()
        )


def _log_tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def running_postgres(database: str = DATABASE) -> Iterator[str]:
    """Start a fresh server, create `database`, yield its DSN; stop the server and delete its files after."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise PostgresUnavailable(f"no PostgreSQL server found (no initdb under {PG_BIN_GLOB}): {INSTALL_HINT}")
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"PostgreSQL refuses to run as root and there is no {SERVER_USER!r} OS user: {INSTALL_HINT}"
            ) from None
    # /tmp (not $TMPDIR): reachable by the postgres user, and short enough for the socket path (107 bytes).
    root = Path(tempfile.mkdtemp(prefix="acrm-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    data, log = root / "data", root / "server.log"
    started = False
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                f"--username={SUPERUSER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=root,
        )
        # Durability is pointless for a throwaway server; small limits keep it light.
        options = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB"
        options += " -c max_connections=30"
        last_error: Exception | None = None
        for _ in range(3):  # another process may take the free port between the check and the start
            port = free_port()
            try:
                _run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(log),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        f"-h 127.0.0.1 -p {port} -k {root} {options}",
                        "start",
                    ],
                    cwd=root,
                )
            except PostgresUnavailable as err:
                last_error = err
                continue
            started = True
            break
        if not started:
            raise PostgresUnavailable(f"{last_error}\n--- server log ---\n{_log_tail(log)}")
        admin = f"host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres connect_timeout=5"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{database}"')
                break
            except psycopg.OperationalError as err:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(f"server not accepting connections: {err}\n{_log_tail(log)}") from err
                time.sleep(0.2)
        yield f"host=127.0.0.1 port={port} user={SUPERUSER} dbname={database}"
    finally:
        if started:
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], cwd=root, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a database on a PostgreSQL server private to this test session (fails, never skips)."""
    with contextlib.ExitStack() as stack:
        problem = None
        try:
            dsn = stack.enter_context(running_postgres())
        except PostgresUnavailable as err:
            problem = str(err)
        if problem is not None:  # outside the except block: one message, no chained traceback
            pytest.fail(problem, pytrace=False)
        yield dsn
