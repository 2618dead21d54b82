"""Helpers for the browser tests of the apps (the SMART demo app in apps/smart-demo, the care-gaps app and the
console the gateway serves): their npm installs, a static file server, headless Chromium through Playwright,
the gateway's command line, and the gateway's sign-in pages driven as a person would."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, clean_env, gateway_exe, skip_or_fail
from tests.test_live_server import wait_until_up

APP_DIR = ROOT / "apps" / "smart-demo"
WEBAPPS = ROOT / "gateway" / "webapps"  # the served apps' npm packages: fhirclient, and axe-core for the tests
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
NPM_REASON = ("node and npm are needed to install the SMART demo app's fhirclient library (apps/smart-demo, "
              "`npm ci`); install Debian's nodejs and npm")
BROWSER_REASON = "Playwright or Debian's chromium is not installed (.ci/run installs both)"
STATUS = "document.getElementById('status')"


def npm() -> str:
    """The npm executable, or skip (fail under CI) when node or npm is missing."""
    found = shutil.which("npm")
    if found is None or shutil.which("node") is None:
        skip_or_fail(NPM_REASON)
    assert found is not None
    return found


def installed_version(app_dir: Path) -> str | None:
    """The fhirclient version in app_dir/node_modules, or None when it is not installed."""
    try:
        return str(json.loads((app_dir / "node_modules" / "fhirclient" / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def locked_version(app_dir: Path) -> str:
    lock = json.loads((app_dir / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/fhirclient"]["version"])


def npm_ci(app_dir: Path) -> None:
    """`npm ci` in app_dir (the pinned fhirclient from package-lock.json)."""
    done = subprocess.run([npm(), "ci", "--no-audit", "--no-fund"], cwd=app_dir, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"npm ci failed in {app_dir}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def cli(*args: str, timeout: float = 300, **env: str) -> str:
    """Run the gateway's command line (``fhir-gateway ARGS``) in a clean environment plus ``env``; its stdout.
    A non-zero exit fails the test with what it printed."""
    done = subprocess.run([gateway_exe(), *args], capture_output=True, text=True, timeout=timeout,
                          env={**clean_env(), **env})
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def webapps_installed() -> Path:
    """gateway/webapps with its locked npm packages (fhirclient for the care-gaps app, axe-core for the
    accessibility checks): `npm ci` once, unless `make install` already did it (a lock file keeps two test
    workers from installing at the same time)."""
    npm()
    with open(Path(tempfile.gettempdir()) / "fhir-gateway-webapps-npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (installed_version(WEBAPPS) != locked_version(WEBAPPS)
                    or not (WEBAPPS / "node_modules" / "axe-core").is_dir()):
                npm_ci(WEBAPPS)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    assert (WEBAPPS / "node_modules" / "fhirclient" / "build" / "fhir-client.min.js").is_file()
    assert (WEBAPPS / "node_modules" / "axe-core" / "axe.min.js").is_file()
    return WEBAPPS


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian chromium through Playwright (skip, or fail under CI, when either is missing)."""
    sync_playwright = playwright()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def smart_demo_app() -> Path:
    """apps/smart-demo with the locked fhirclient installed: `npm ci` once, unless `make install-test` already
    did it (a lock file keeps two test workers from installing at the same time)."""
    npm()
    with open(Path(tempfile.gettempdir()) / "fhir-gateway-smart-demo-npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if installed_version(APP_DIR) != locked_version(APP_DIR):
                npm_ci(APP_DIR)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    assert installed_version(APP_DIR) == locked_version(APP_DIR)
    assert (APP_DIR / "node_modules" / "fhirclient" / "build" / "fhir-client.js").is_file()
    return APP_DIR


@dataclass
class StaticServer:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def serve_static(directory: Path, port: int, log: Path) -> StaticServer:
    """`python -m http.server` on 127.0.0.1:port for directory, as docs/smart-apps.md tells a newcomer."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", str(directory)], stdout=out, stderr=subprocess.STDOUT)
    server = StaticServer(proc, port)
    wait_until_up(proc, f"{server.root}/launch.html", 30, lambda: log.read_text()[-2000:])
    return server


def playwright() -> Any:
    """Playwright's sync_playwright, or skip (fail under CI) when it or Debian's chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail(BROWSER_REASON)
    if not os.path.exists(CHROMIUM):
        skip_or_fail(BROWSER_REASON)
    return sync_playwright


@pytest.fixture()
def browser_page() -> Iterator[Any]:
    """A fresh page of headless Debian chromium; every request it sends is kept in ``page.sent`` (Playwright
    Request objects: url, method, headers, post_data)."""
    with chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(60_000)
        sent: list[Any] = []
        page.on("request", lambda r: sent.append(r))
        page.sent = sent
        yield page


def sign_in(page: Any, username: str, password: str) -> None:
    """On the gateway's sign-in page: sign in, then allow on the consent page (the launch patient is set, or
    the user is a patient, so no picker shows)."""
    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in")
    page.wait_for_selector("#allow")
    assert page.query_selector("#patients") is None, "no patient picker is expected here"
    page.click("#allow")


def wait_status(page: Any, prefix: str) -> str:
    """Wait until the app's status line starts with ``prefix`` (or reports an error); returns it."""
    page.wait_for_function(f"{STATUS} && ({STATUS}.textContent.startsWith({json.dumps(prefix)}) || "
                           f"{STATUS}.textContent.startsWith('error'))")
    status = str(page.inner_text("#status"))
    assert status.startswith(prefix), status
    return status


def observations(page: Any) -> list[str]:
    return [str(t) for t in page.eval_on_selector_all("#observations li", "els => els.map(e => e.textContent)")]


def token_response(page: Any) -> dict[str, Any]:
    """The app's current token response as fhirclient keeps it."""
    return dict(page.evaluate("smartDemo.client().state.tokenResponse"))
