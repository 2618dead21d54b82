"""docs/smart-apps.md works as written: its `sh` blocks run in order in a fresh folder holding a copy of
apps/smart-demo (the gateway and the app on free ports instead of 8080 and 9000; the long-running `serve` and
`http.server` commands in the background), then headless chromium does what the page tells a person to do in
the browser: the standalone launch as the demo patient user, the EHR launch from the printed URL as the demo
clinician, and a refresh. Its `js` blocks are the demo app's own code.

Two set-up lines are not run: `make install` (the test suite runs inside the environment it makes) and
`. .venv/bin/activate` (the environment's bin folder is put first on PATH instead)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, clean_env
from tests.test_live_server import free_port, stop_process

from .smart_demo import (
    APP_DIR,
    browser_page,  # noqa: F401 - a fixture
    npm,
    observations,
    sign_in,
    wait_status,
)

pytestmark = pytest.mark.live
DOC = ROOT / "docs" / "smart-apps.md"
NOT_RUN = ("make install", ". .venv/bin/activate")
BACKGROUND = ("fhir-gateway serve", "python3 -m http.server")


def sh_commands(text: str) -> list[str]:
    """The commands of the page's ```sh blocks, in order (continuation lines joined, blank lines dropped)."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        out += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return out


def js_snippets(text: str) -> list[str]:
    return re.findall(r"```js\n(.*?)```", text, flags=re.S)


def normalized(code: str) -> str:
    return "\n".join(line.strip() for line in code.strip().splitlines())


def wait_for(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before {url} answered:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)


@pytest.fixture()
def running(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The page's commands run in ``tmp_path``; yields the ports and what the commands printed, and stops the
    background processes afterwards."""
    npm()
    shutil.copytree(APP_DIR, tmp_path / "apps" / "smart-demo", ignore=shutil.ignore_patterns("node_modules"))
    gw, app = free_port(), free_port()
    ports = {"8080": str(gw), "9000": str(app)}
    env = {**clean_env(), "PATH": f"{Path(sys.executable).parent}:{clean_env().get('PATH', '')}"}
    background: list[subprocess.Popen[Any]] = []
    printed: dict[str, str] = {}
    try:
        for i, command in enumerate(sh_commands(DOC.read_text())):
            if command in NOT_RUN:
                continue
            cmd = re.sub(r"\b(8080|9000)\b", lambda m: ports[m.group(1)], command)
            if cmd.startswith(BACKGROUND):
                log = tmp_path / f"background-{i}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=tmp_path, env=env, stdout=out,
                                            stderr=subprocess.STDOUT)
                background.append(proc)
                probe = (f"http://127.0.0.1:{gw}/healthz" if cmd.startswith("fhir-gateway")
                         else f"http://127.0.0.1:{app}/launch.html")
                wait_for(probe, proc, log)
                continue
            done = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
            printed[command] = done.stdout
        yield {"gateway": f"http://127.0.0.1:{gw}", "app": f"http://127.0.0.1:{app}", "printed": printed,
               "workdir": tmp_path}
    finally:
        for proc in reversed(background):
            stop_process(proc)


def printed_by(running: dict[str, Any], prefix: str) -> str:
    found = [out for command, out in running["printed"].items() if command.startswith(prefix)]
    assert len(found) == 1, (prefix, list(running["printed"]))
    return str(found[0]).strip()


def test_the_newcomer_path_runs_as_written(browser_page: Any, running: dict[str, Any]) -> None:  # noqa: F811
    text = DOC.read_text()
    page = browser_page
    fhirclient = running["workdir"] / "apps" / "smart-demo" / "node_modules" / "fhirclient" / "build"
    assert (fhirclient / "fhir-client.js").is_file()  # the page's npm ci installed it
    assert json.loads(printed_by(running, "curl -s http://127.0.0.1:8080/fhir/.well-known"))["token_endpoint"]
    registered = json.loads(printed_by(running, "fhir-gateway clients add --client-id smart-demo"))
    assert registered["client_id"] == "smart-demo" and registered["token_endpoint_auth_method"] == "none"
    # step 4: the standalone launch as the patient user the page creates
    m = re.search(r"GATEWAY_USER_PASSWORD=(\S+) fhir-gateway users add --username (\S+) --fhir-user Patient/(\S+)",
                  text)
    assert m, "the page no longer adds a patient user"
    password, username, patient = m.groups()
    page.goto(f"{running['app']}/launch.html?iss={running['gateway']}/fhir")
    sign_in(page, username, password)
    wait_status(page, "ready")
    assert page.inner_text("#patient-id") == patient
    name = page.inner_text("#patient-name")
    assert name == "Maria Elena Gonzalez" and name in text
    assert len(observations(page)) == 4 and "her four Observations" in " ".join(text.split())
    # step 6: refresh
    page.click("#refresh")
    assert wait_status(page, "refreshed") == "refreshed; loaded 4 observations"
    # step 5: the EHR launch URL the page's command printed, and the clinician password it showed
    url = printed_by(running, "fhir-gateway launch")
    assert url.startswith(f"{running['app']}/launch.html?iss=") and "&launch=" in url
    clinician_password = printed_by(running, "sed -n 2p var/demo-user.txt")
    page.goto(url)
    sign_in(page, "demo-clinician", clinician_password)
    wait_status(page, "ready")
    assert page.inner_text("#patient-id") == "demo-pat-4"
    assert page.inner_text("#patient-name") == "Robert James Williams" and "Robert James Williams" in text


def test_the_code_snippets_are_the_apps_code() -> None:
    snippets = js_snippets(DOC.read_text())
    assert len(snippets) >= 3
    app_js = normalized((APP_DIR / "app.js").read_text())
    for snippet in snippets:
        assert normalized(snippet) in app_js, snippet
