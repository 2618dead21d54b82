"""The console's Data feeds screen against a real `fhir-gateway serve` with authorization on, in headless
Debian chromium driven by Playwright, signed in through the gateway's own pages: an ingest run made with the
command line (a remittance from the fixture corpus with one unreadable claim payment) shows with its reject's
file, line and reason and with warning counts by rule equal to the run's data-quality report; a Bulk export the
signed-in user started shows with the status its status endpoint gives; a Subscription shows with the last
notification the gateway sent to a live receiver. axe-core finds no WCAG 2.1 A/AA violation, the pages need
no horizontal scrolling at 200 % zoom, and the run is opened with the keyboard."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from gateway.auth.assertion_client import generate_client_key
from gateway.auth.clients import ClientStore
from gateway.fhir.subscription_topic import FILTER, TOPIC
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, gateway_exe
from tests.console.test_console import browser, check_access, cli, signed_in  # noqa: F401 - browser: fixture
from tests.feeds.helpers import bad_remittance, parts, report, runs, top
from tests.screenshots import screenshot
from tests.security.authsrv_support import hidden
from tests.security.receiver import Receiver, receiver
from tests.smart.conftest import pkce
from tests.test_live_server import LiveServer, start_server, stop_server

pytestmark = pytest.mark.live
STAFF, STAFF_PASSWORD = "feeds-staff", "feeds-password-1"
FEEDS = "gateway.feeds.read"
CONSOLE_SCOPE = f"openid fhirUser online_access user/*.rs user/Group.u {FEEDS}"
JSON = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}


class Feeds:
    """The server, its database and folder, the operator's backend token and the receiver of notifications."""

    def __init__(self, server: LiveServer, database: str, workdir: Path, hook: Receiver) -> None:
        self.gateway = server
        self.database = database
        self.workdir = workdir
        self.hook = hook
        store = SqlStore(database, migrate=False)
        try:
            clients = ClientStore(store.engine)
            clients.register("Gateway console", CONSOLE_SCOPE, client_id="console",
                             redirect_uris=[f"{server.root}/console/callback"])
            key = generate_client_key("ES384")
            clients.register("Feeds operator", f"system/*.cruds {FEEDS}", jwks={"keys": [key.as_dict(private=False)]},
                             client_id="feeds-operator")
        finally:
            store.close()
        key_file = workdir / "operator-key.json"
        key_file.write_text(json.dumps(key.as_dict(private=True)))
        tok = cli("token", "--fhir-base", server.base, "--client-id", "feeds-operator", "--key", str(key_file),
                  "--scope", f"system/*.cruds {FEEDS}").strip()
        self.api = httpx.Client(base_url=server.base, headers={**JSON, "Authorization": f"Bearer {tok}"}, timeout=120)

    def url(self, path: str, **params: str) -> str:
        return f"{self.gateway.root}{path}" + (f"?{urlencode(params)}" if params else "")


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feeds]:
    workdir = tmp_path_factory.mktemp("console-feeds")
    db = f"sqlite:///{workdir / 'gw.sqlite3'}"
    cli("users", "add", "--database", db, "--username", STAFF, "--fhir-user", "Practitioner/feeds-prac-1",
        GATEWAY_USER_PASSWORD=STAFF_PASSWORD)
    with receiver() as hook:
        server = start_server(db, workdir, demo=False, auth=None, timeout=180,
                              env={"GATEWAY_EGRESS_ALLOW_NETWORKS": "loopback", "GATEWAY_EGRESS_ALLOW_HTTP": "true",
                                   "GATEWAY_SUBSCRIPTION_POLL_SECONDS": "0.5"})
        try:
            yield Feeds(server, db, workdir, hook)
        finally:
            stop_server(server)


def user_token(feeds: Feeds, user: str, password: str) -> str:
    """The console client's code flow with PKCE over HTTP, as a browser would go through it: the user's token."""
    verifier, challenge = pkce()
    redirect = f"{feeds.gateway.root}/console/callback"
    with httpx.Client(base_url=feeds.gateway.root, timeout=60) as http:
        page = http.get("/auth/authorize", params={
            "response_type": "code", "client_id": "console", "redirect_uri": redirect, "scope": CONSOLE_SCOPE,
            "state": secrets.token_urlsafe(16), "aud": feeds.gateway.base, "code_challenge": challenge,
            "code_challenge_method": "S256"})
        assert page.status_code == 200, page.text
        consent = http.post("/auth/authorize", data={**hidden(page.text), "username": user, "password": password})
        back = http.post("/auth/authorize", data={**hidden(consent.text), "decision": "allow"}, follow_redirects=False)
        assert back.status_code == 302, back.text
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        tok = http.post("/auth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                                             "client_id": "console", "code_verifier": verifier})
        assert tok.status_code == 200, tok.text
        return str(tok.json()["access_token"])


def wait_for(what: str, probe: Any, seconds: float = 120) -> Any:
    """Poll ``probe`` until it returns something truthy (work the server does in the background)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen")


def row_text(page: Any, selector: str) -> list[str]:
    """The cells of the table row holding ``selector``."""
    return list(page.eval_on_selector(selector, "el => Array.from(el.closest('tr').cells).map(c => c.innerText.trim())"))


@pytest.mark.screenshots
def test_the_feeds_screen_shows_runs_jobs_and_notifications(feeds: Feeds, browser: Any) -> None:  # noqa: F811
    # an ingest run from the command line, with one rejected record and data-quality warnings
    bad = bad_remittance(feeds.workdir)
    quality = feeds.workdir / "quality.json"
    done = subprocess.run([gateway_exe(), "ingest", "--quiet", "--database", feeds.database, "--format", "x12-835",
                           "--report", str(quality), str(bad)], capture_output=True, text=True, timeout=300,
                          env=clean_env())
    assert done.returncode == 3, done.stderr  # some records rejected
    expected = json.loads(quality.read_text())
    (run,) = runs(feeds.api.get("$ingest-runs").json())
    run_id = run["id"][0]
    (full,) = runs(feeds.api.get(f"$ingest-runs/{run_id}").json())
    (reject,) = [parts(p) for p in full["reject"]]
    assert report(full) == expected and expected["warnings"]

    # a Subscription, whose handshake goes to the live receiver
    feeds.api.put("Group/feeds-g1", json={"resourceType": "Group", "id": "feeds-g1", "type": "person",
                                          "actual": True}).raise_for_status()
    sub = {"resourceType": "Subscription", "id": "feeds-s1", "status": "requested", "reason": "list changes",
           "criteria": TOPIC, "_criteria": {"extension": [{"url": FILTER, "valueString": "Group/feeds-g1"}]},
           "channel": {"type": "rest-hook", "endpoint": feeds.hook.url("/hook"), "payload": "application/fhir+json"}}
    assert feeds.api.put("Subscription/feeds-s1", json=sub).status_code == 201

    def last_notification() -> dict[str, Any] | None:
        body = feeds.api.get("Subscription/feeds-s1/$notification-status").json()
        got = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in body["parameter"]}
        return got if "lastNotification" in got else None

    status = wait_for("the handshake", last_notification)
    assert status["lastOutcome"] == "delivered" and feeds.hook.requests

    # a Bulk export the signed-in user starts with the console's client, run to its end
    user = httpx.Client(base_url=feeds.gateway.base, timeout=120, headers={
        "Authorization": f"Bearer {user_token(feeds, STAFF, STAFF_PASSWORD)}", "Accept": "application/fhir+json"})
    kick = user.get("$export", params={"_type": "Patient"}, headers={"Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    job = kick.headers["Content-Location"].rsplit("/", 1)[1]
    wait_for("the export", lambda: user.get(f"$export-status/{job}").status_code == 200)
    listed = {parts(p)["id"][0]: parts(p) for p in top(user.get("$jobs").json(), "job")}
    assert listed[job]["status"] == ["complete"]

    # the screen, signed in through the gateway's pages
    page = signed_in(browser, feeds, "/console/feeds", STAFF, STAFF_PASSWORD)
    try:
        page.wait_for_selector("#runs")
        cells = row_text(page, f"#run-{run_id}")
        assert cells[1] == "x12-835" and cells[2] == bad.name and cells[3] == "local operator (command line)"
        assert cells[4] == str(expected["recordsRead"]) and cells[8] == str(expected["rejected"]) == "1"
        assert cells[9] == str(expected["loadedWithWarnings"])
        jcells = row_text(page, f"#job-{job}")
        assert jcells[1] == "export" and jcells[2] == "complete" and STAFF in jcells[3]
        scells = row_text(page, "#sub-feeds-s1")
        assert scells[3] == "active" and scells[4] == status["lastNotification"]
        assert scells[5] == "handshake delivered" and scells[7] == str(status["notificationsSent"])
        screenshot(page, "console-feeds")
        check_access(page)
        # open the run with the keyboard
        page.focus(f"#run-{run_id}")
        page.keyboard.press("Enter")
        page.wait_for_selector("#rejects-table")
        assert page.url.endswith(f"/console/feeds/runs/{run_id}")
        (shown,) = page.eval_on_selector_all("#rejects-table tbody tr", "rows => rows.map(r => "
                                             "Array.from(r.cells).map(c => c.innerText.trim()))")
        assert shown[:3] == [reject["file"][0], str(reject["line"][0]), reject["reason"][0]]
        assert shown[0] == bad.name
        warnings = page.eval_on_selector_all("#warnings-table tbody tr", "rows => rows.map(r => "
                                             "[r.cells[0].innerText.trim(), r.cells[1].innerText.trim()])")
        assert warnings == [[g["rule"], str(g["count"])] for g in expected["warnings"]]
        screenshot(page, "console-feeds-run")
        check_access(page)
    finally:
        page.context.close()
