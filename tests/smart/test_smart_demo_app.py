"""The SMART demo app (apps/smart-demo, built on the `fhirclient` library from npm) against a real `fhir-gateway
serve --demo`, in headless Debian chromium driven by Playwright: a standalone launch with PKCE S256 by a patient
user, an EHR launch (`iss` + `launch` from `fhir-gateway launch`) by a clinician, and `client.refresh()` after the
access token has expired (a public client's refresh carries no client_id: issue 14, defect 2)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.test_live_server import (
    LiveServer,
    demo_resources,
    free_port,
    start_server,
    stop_process,
    stop_server,
)

from .smart_demo import (
    StaticServer,
    browser_page,  # noqa: F401 - a fixture
    cli,
    observations,
    serve_static,
    sign_in,
    smart_demo_app,  # noqa: F401 - a fixture
    token_response,
    wait_status,
)

pytestmark = pytest.mark.live
PATIENT_USER, PATIENT_PASSWORD, PATIENT = "demo-patient", "patient-password-1", "demo-pat-1"
CLINICIAN, CLINICIAN_PASSWORD = "e2e-doctor", "doctor-password-1"
SCOPE = "launch launch/patient openid fhirUser offline_access patient/*.rs user/*.rs"


@dataclass
class Deployment:
    gateway: LiveServer
    database: str
    app: StaticServer


@pytest.fixture(scope="module")
def app_server(smart_demo_app: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticServer]:  # noqa: F811
    server = serve_static(smart_demo_app, free_port(), tmp_path_factory.mktemp("smart-demo-http") / "http.log")
    try:
        yield server
    finally:
        stop_process(server.proc)


def deploy(workdir: Path, app: StaticServer, **settings: str) -> Deployment:
    """A gateway with the demo data, the demo app registered with the commands docs/smart-apps.md uses, a
    patient user for demo-pat-1 and a clinician user."""
    db = f"sqlite:///{workdir / 'gw.sqlite3'}"
    cli("clients", "add", "--database", db, "--client-id", "smart-demo", "--name", "SMART demo app",
        "--redirect-uri", f"{app.root}/index.html", "--scope", SCOPE)
    cli("users", "add", "--database", db, "--username", PATIENT_USER, "--fhir-user", f"Patient/{PATIENT}",
        GATEWAY_USER_PASSWORD=PATIENT_PASSWORD)
    cli("users", "add", "--database", db, "--username", CLINICIAN, "--fhir-user", "Practitioner/demo-practitioner",
        GATEWAY_USER_PASSWORD=CLINICIAN_PASSWORD)
    return Deployment(start_server(db, workdir, demo=True, auth=None, timeout=180, env=settings), db, app)


@pytest.fixture(scope="module")
def demo(app_server: StaticServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = deploy(tmp_path_factory.mktemp("smart-demo"), app_server)
    try:
        yield d
    finally:
        stop_server(d.gateway)


def expected_observations(patient: str) -> list[dict[str, Any]]:
    return [r for r in demo_resources() if r["resourceType"] == "Observation"
            and r["subject"]["reference"] == f"Patient/{patient}"]


def authorize_query(page: Any) -> dict[str, str]:
    sent = [r.url for r in page.sent if urlsplit(r.url).path == "/auth/authorize" and r.method == "GET"]
    assert len(sent) == 1, sent
    return {k: v[0] for k, v in parse_qs(urlsplit(sent[0]).query).items()}


def token_posts(page: Any, grant_type: str) -> list[Any]:
    return [r for r in page.sent if urlsplit(r.url).path == "/auth/token" and r.method == "POST"
            and parse_qs(r.post_data or "").get("grant_type") == [grant_type]]


def standalone_launch(page: Any, d: Deployment) -> None:
    page.goto(f"{d.app.root}/launch.html?iss={d.gateway.base}")
    sign_in(page, PATIENT_USER, PATIENT_PASSWORD)
    wait_status(page, "ready")


def test_standalone_launch_with_pkce_by_a_patient_user(demo: Deployment, browser_page: Any) -> None:  # noqa: F811
    page = browser_page
    standalone_launch(page, demo)
    query = authorize_query(page)
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["client_id"] == "smart-demo" and query["aud"] == demo.gateway.base and "launch" not in query
    assert "launch/patient" in query["scope"].split()
    exchange = token_posts(page, "authorization_code")
    assert len(exchange) == 1 and parse_qs(exchange[0].post_data)["code_verifier"][0]
    assert page.inner_text("#patient-name") == "Maria Elena Gonzalez"
    assert page.inner_text("#patient-id") == PATIENT
    assert page.inner_text("#user") == f"Patient/{PATIENT}"
    shown = observations(page)
    expected = expected_observations(PATIENT)
    assert len(shown) == len(expected) >= 2
    assert {o["code"].get("text") for o in expected} == {s.split(":")[0].split(" (")[0] for s in shown}
    tok = token_response(page)
    assert tok["patient"] == PATIENT and tok["refresh_token"] and "offline_access" in tok["scope"].split()


def test_ehr_launch_gives_the_launch_patient(demo: Deployment, browser_page: Any) -> None:  # noqa: F811
    page = browser_page
    url = cli("launch", "--database", demo.database, "--client-id", "smart-demo", "--patient", "demo-pat-4",
              "--app", f"{demo.app.root}/launch.html", "--fhir-base", demo.gateway.base).strip()
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{demo.app.root}/launch.html?") and params["iss"] == demo.gateway.base
    page.goto(url)
    sign_in(page, CLINICIAN, CLINICIAN_PASSWORD)  # the launch names the patient: no picker
    wait_status(page, "ready")
    query = authorize_query(page)
    assert query["launch"] == params["launch"] and "launch" in query["scope"].split()
    assert query["code_challenge_method"] == "S256"
    assert page.inner_text("#patient-id") == "demo-pat-4"
    assert page.inner_text("#patient-name") == "Robert James Williams"
    assert page.inner_text("#user") == "Practitioner/demo-practitioner"
    assert len(observations(page)) == len(expected_observations("demo-pat-4")) >= 2
    assert token_response(page)["patient"] == "demo-pat-4"
    # a launch id is good once: opening the same launch URL again ends in an error, not in data
    page.goto(url)
    page.wait_for_url(lambda u: urlsplit(u).path.endswith("/index.html"))
    status = wait_status(page, "error")
    assert "launch" in status, status


@pytest.fixture()
def short_lived(app_server: StaticServer, tmp_path: Path) -> Iterator[Deployment]:
    d = deploy(tmp_path, app_server, GATEWAY_ACCESS_TOKEN_LIFETIME="30")
    try:
        yield d
    finally:
        stop_server(d.gateway)


def test_refresh_after_the_access_token_expired(short_lived: Deployment, browser_page: Any) -> None:  # noqa: F811
    page = browser_page
    standalone_launch(page, short_lived)
    first = token_response(page)
    assert first["expires_in"] == 30 and first["refresh_token"]
    # wait (polling in the page) until the access token is past its expiry; then the server refuses it
    page.wait_for_function("Date.now() / 1000 > smartDemo.client().state.expiresAt + 1", timeout=120_000)
    old = {"Authorization": f"Bearer {first['access_token']}"}
    refused = httpx.get(f"{short_lived.gateway.base}/Patient/{PATIENT}", headers=old)
    assert refused.status_code == 401 and "expired" in refused.headers["www-authenticate"], refused.text
    page.click("#refresh")
    status = wait_status(page, "refreshed")
    assert status == f"refreshed; loaded {len(expected_observations(PATIENT))} observations"
    assert page.inner_text("#refreshes") == "1"
    second = token_response(page)
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]  # rotated
    # fhirclient's refresh of a public client sends no client_id and no Authorization header
    refreshes = token_posts(page, "refresh_token")
    assert len(refreshes) == 1
    form = parse_qs(refreshes[0].post_data)
    assert form["refresh_token"] == [first["refresh_token"]] and "client_id" not in form
    assert "authorization" not in {k.lower() for k in refreshes[0].headers}
    # a request after the refresh succeeds with the new token
    page.click("#reload")
    wait_status(page, "loaded")
    h = {"Authorization": f"Bearer {second['access_token']}"}
    assert httpx.get(f"{short_lived.gateway.base}/Patient/{PATIENT}", headers=h).status_code == 200
    # the rotated-out refresh token is dead; replaying it ends the whole grant
    token_url = f"{short_lived.gateway.root}/auth/token"
    replay = httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    later = httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]})
    assert later.status_code == 400, later.text
