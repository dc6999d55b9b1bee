"""The Dagster UI shows a segment, its size and the asset checks: a real webserver driven by headless Chromium.

The project is materialized once (demo data, one partition, with the example exports) into a temporary
DAGSTER_HOME and DuckDB file; then `dagster-webserver` serves that instance on 127.0.0.1 and a free port,
and Playwright drives Debian's Chromium (`/usr/bin/chromium`, installed by `make system-deps`; Playwright's
own browser downloads are not used). The browser may reach only that webserver.

Screenshots (graph.png, segment.png, checks.png; failure.png when it fails) and webserver.log stay in the
test's tmp folder, /tmp/pytest-of-$USER/pytest-<N>/test_segment_size_and_checks_i0/ (pytest-current links
to the latest session); the test prints their paths (`pytest -s`), and copies the screenshots to
$ACRM_UI_SCREENSHOTS_DIR when that is set (e.g. for CI artifacts).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest
import yaml
from dagster import DagsterInstance

from acrm_pipelines.components.segments import SIZE_CHECK
from acrm_pipelines.settings import REPO_ROOT
from tests.cases.demo import DEMO_END

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = "run `make system-deps` (as root it installs the Debian package chromium)"
# Playwright adds --headless itself. As root Chromium needs --no-sandbox; without the rest it reaches for
# Google's servers (or a proxy from the environment).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--no-proxy-server",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SEGMENT = "spring_target"
EXPORT = "spring_email_file"  # an export of SEGMENT: its blocking check shows next to the segment
UI_TIMEOUT_MS = 30_000  # the UI loads lazily: every wait for text may take this long
AS_OF = DEMO_END.isoformat()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def stop(proc: subprocess.Popen) -> None:
    """The webserver and its code server: the whole process group, politely first."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    # Whatever of the group is left (the leader, or a code server outliving it) goes now.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture
def webserver(
    tmp_path: Path, demo_landing: Path, monkeypatch: pytest.MonkeyPatch, make_settings, run_pipeline
) -> Iterator[dict]:
    """One materialized partition in a temporary instance, served by dagster-webserver; yields its facts."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: {INSTALL_HINT}"  # before the minute of setup
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text()) or {}
    config.setdefault("nux", {})["enabled"] = False  # no "join the community" dialog over the page
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    settings = make_settings(tmp_path, demo_landing, with_exports=True)
    with DagsterInstance.get() as instance:
        summary = run_pipeline(settings, AS_OF, instance)
    assert summary.checks_failed == []
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        (size,) = con.execute(
            "SELECT size FROM segments.evaluations WHERE segment_key = ? AND as_of = ?", [SEGMENT, DEMO_END]
        ).fetchone()

    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ACRM_LANDING_DIR": str(settings.landing_dir),
        "ACRM_DUCKDB_PATH": str(settings.duckdb_path),
        "ACRM_OUTBOX_DIR": str(settings.outbox_dir),
        "ACRM_SEGMENTS_DIR": str(settings.segments_dir),
        "ACRM_EXPORTS_DIR": str(settings.exports_dir),
        "ACRM_JOURNEYS_DIR": str(settings.journeys_dir),
        "ACRM_START_DATE": settings.start_date.isoformat(),
    }
    port = free_port()
    log = tmp_path / "webserver.log"
    exe = Path(sys.executable).parent / "dagster-webserver"
    cmd = [str(exe), "-h", "127.0.0.1", "-p", str(port), "-m", "acrm_pipelines.definitions", "--read-only"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"dagster-webserver exited with {proc.returncode}:\n{log_tail(log)}"
            assert time.monotonic() < deadline, f"dagster-webserver did not answer in 60 s:\n{log_tail(log)}"
            try:
                with direct.open(f"{base}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        yield {"base": base, "size": size, "log": log}
    finally:
        stop(proc)


@pytest.mark.timeout(300)
def test_segment_size_and_checks_in_the_asset_graph(webserver: dict, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, size = webserver["base"], webserver["size"]
    size_text = re.compile(rf"^\s*({size}|{size:,})\s*$")
    shots: list[Path] = []
    blocked: list[str] = []

    def shot(page, name: str) -> None:
        path = tmp_path / name
        page.screenshot(path=path, full_page=True)
        shots.append(path)

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",  # fresh, private to this test
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 2200, "height": 1200},
        )
        page = context.pages[0] if context.pages else context.new_page()
        try:
            # Only the webserver: anything else (fonts, analytics, updates) is refused, not waited for.
            context.route(
                lambda url: not url.startswith(base), lambda route: (blocked.append(route.request.url), route.abort())
            )
            context.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)

            # 1. The global asset graph: find the segment with "Jump to…"; the graph selects it.
            page.goto(f"{base}/asset-groups")
            page.get_by_placeholder("Jump to…").fill(SEGMENT)
            page.get_by_placeholder("Jump to…").press("Enter")
            expect(page.get_by_text(f"segments / {SEGMENT}", exact=True)).to_be_visible()

            # 2. The segment and its exports in the graph (what "View in graph" opens, both groups expanded, side
            # panels folded away): the segment's node, and its exports' nodes with their passed asset checks.
            selection = quote(f'key:"segments/{SEGMENT}"+', safe="")
            expanded = quote("global@global:segments,global@global:exports", safe="")
            page.goto(f"{base}/asset-groups~{selection}/{quote(f'segments/{SEGMENT}', safe='')}?expanded={expanded}")
            expect(page.get_by_text(f"segments / {SEGMENT}", exact=True)).to_be_visible()
            page.get_by_role("button", name="Hide navigation").click()
            page.get_by_role("button").filter(has=page.locator('[aria-label="panel_show_right"]')).filter(
                has_text=re.compile("^$")
            ).click()  # the asset tree left of the graph
            for name in (SEGMENT, EXPORT):
                expect(page.get_by_text(name, exact=True).last).to_be_visible()
            expect(page.get_by_text("1 / 1 Passed").first).to_be_visible()
            expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0)
            shot(page, "graph.png")

            # 3. The segment's page: the latest materialization's metadata, with the size from DuckDB.
            page.goto(f"{base}/assets/segments/{SEGMENT}")
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            expect(page.get_by_text(AS_OF, exact=True).first).to_be_visible()
            size_row = page.get_by_role("row").filter(has=page.get_by_text("size", exact=True))
            expect(size_row).to_have_count(1)
            expect(size_row.get_by_role("cell").last).to_have_text(size_text)
            for label in ("entered", "exited"):
                expect(page.get_by_role("cell", name=label, exact=True)).to_be_visible()
            shot(page, "segment.png")

            # 4. The segment's own check (its size against the previous evaluation: `size_alert` in its YAML).
            page.goto(f"{base}/assets/segments/{SEGMENT}?view=checks")
            expect(page.get_by_text(SIZE_CHECK, exact=True).first).to_be_visible()
            expect(page.get_by_text("Passed", exact=True).first).to_be_visible()

            # 5. The export's blocking check, and the raw table's Great Expectations check, both passed.
            page.goto(f"{base}/assets/exports/{EXPORT}?view=checks")
            expect(page.get_by_text("nothing_suppressed_delivered").first).to_be_visible()
            expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
            shot(page, "checks.png")
            page.goto(f"{base}/assets/raw_customers?view=checks")
            expect(page.get_by_text("gx_customers").first).to_be_visible()
            expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
        except Exception:
            with contextlib.suppress(Exception):
                shot(page, "failure.png")
            print(f"webserver log:\n{log_tail(webserver['log'])}")
            raise
        finally:
            context.close()
            print("screenshots:", *shots, sep="\n  ")
            if blocked:
                print("refused requests outside the webserver:", *sorted(set(blocked)), sep="\n  ")
            if os.environ.get("ACRM_UI_SCREENSHOTS_DIR"):
                target = Path(os.environ["ACRM_UI_SCREENSHOTS_DIR"])
                target.mkdir(parents=True, exist_ok=True)
                for path in shots:
                    shutil.copy(path, target / path.name)
