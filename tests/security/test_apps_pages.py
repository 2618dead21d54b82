"""Attacks on the paths to data the sign-in redesign and the served apps add: the patient picker's search, the
demo EHR launcher (it lists patients to a signed-in clinician) and the authorized-apps page (it revokes
tokens), and the static file route of /apps. Each is tried without, with forged, with spent and with
misdirected proofs of sign-in, and by the wrong kind of user."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.auth import routes as auth_routes
from gateway.auth.context import SYSTEM, acting_as
from gateway.auth.users import add_user
from gateway.config import Settings
from gateway.store.sql.store import SqlStore
from gateway.webapps.routes import LAUNCHER_AUD
from tests.conftest import wipe
from tests.smart.conftest import BASE, ORIGIN, bearer, pkce, wipe_auth

PASSWORD = "correct horse battery"
REDIRECT = "http://localhost/apps/care-gaps/index.html"
SECRET_NAME = "Zebedee"  # a patient name that must never reach someone without the right to see it


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('apps-pages') / 'gw.sqlite3'}")
    yield s
    s.close()


def _client(store: SqlStore, demo: bool) -> TestClient:
    # no lifespan (no `with`): the demo data is not loaded; the launcher only needs the demo setting
    app = create_app(Settings(base_url=BASE, auth="smart", subscription_notifier=False, demo=demo), store=store,
                     access_log=False)
    return TestClient(app, base_url=ORIGIN)


@pytest.fixture(scope="module")
def demo_app(store: SqlStore) -> TestClient:
    return _client(store, demo=True)


@pytest.fixture()
def c(demo_app: TestClient, store: SqlStore) -> TestClient:
    wipe(store)
    wipe_auth(store, demo_app.app.state.authority.audit)
    auth = demo_app.app.state.authority
    auth.clients.register("Care gaps", "launch launch/patient openid fhirUser patient/*.rs user/*.cu",
                          redirect_uris=[REDIRECT], client_id="care-gaps")
    add_user(store.engine, "doc", PASSWORD, "Practitioner/d1")
    add_user(store.engine, "doc2", PASSWORD, "Practitioner/d2")
    add_user(store.engine, "pat", PASSWORD, "Patient/p1")
    with acting_as(SYSTEM):
        for pid, family in (("p1", "Able"), ("p2", SECRET_NAME)):
            demo_app.app.state.rest.update("Patient", pid, {"resourceType": "Patient", "id": pid,
                                                            "name": [{"family": family}]})
    return demo_app


def hidden(page: str) -> dict[str, str]:
    return {m.group(1): m.group(2).replace("&amp;", "&") for m in
            re.finditer(r"<input type=hidden name='?([^' >]+)'? value='([^']*)'>", page)}


def test_the_app_route_serves_only_the_app_files(c: TestClient) -> None:
    ok = c.get("/apps/care-gaps/index.html")
    assert ok.status_code == 200 and "default-src 'self'" in ok.headers["content-security-policy"]
    for path in ("/apps/care-gaps/package.json", "/apps/care-gaps/..%2Fpackage.json", "/apps/care-gaps/..%2Froutes.py",
                 "/apps/care-gaps/%2e%2e%2f__init__.py", "/apps/care-gaps/../routes.py", "/apps/vendor/../routes.py",
                 "/apps/node_modules/fhirclient/package.json"):
        r = c.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "import" not in r.text


def test_the_launcher_exists_only_with_the_demo(store: SqlStore, c: TestClient) -> None:
    plain = _client(store, demo=False)
    assert plain.get("/apps/ehr-launcher").status_code == 404
    r = plain.post("/apps/ehr-launcher", data={"_step": "login", "username": "doc", "password": PASSWORD})
    assert r.status_code == 404 and SECRET_NAME not in r.text


def test_the_launcher_refuses_patients_wrong_passwords_and_forged_tickets(c: TestClient) -> None:
    first = c.get("/apps/ehr-launcher", params={"q_name": SECRET_NAME})  # authorization on: sign in first
    assert first.status_code == 200 and "id=sign-in" in first.text and SECRET_NAME not in first.text
    bad = c.post("/apps/ehr-launcher", data={"_step": "login", "username": "doc", "password": "wrong password"})
    assert bad.status_code == 401 and SECRET_NAME not in bad.text
    patient = c.post("/apps/ehr-launcher", data={"_step": "login", "username": "pat", "password": PASSWORD})
    assert patient.status_code == 403 and SECRET_NAME not in patient.text
    auth = c.app.state.authority
    forged = [
        "",
        "not-a-ticket",
        auth_routes.user_ticket(auth, "doc"),  # the authorized-apps page's ticket: another audience
        auth_routes.user_ticket(auth, "pat", LAUNCHER_AUD),  # a patient user's
        auth_routes.user_ticket(auth, "nobody", LAUNCHER_AUD),  # no such user
        auth_routes.user_ticket(auth, "doc", LAUNCHER_AUD, ttl=-10),  # expired
    ]
    for ticket in forged:
        for step in ("search", "launch"):
            r = c.post("/apps/ehr-launcher", data={"_step": step, "ticket": ticket, "patient": "p2"},
                       follow_redirects=False)
            assert r.status_code == 401 and SECRET_NAME not in r.text, (ticket[:20], step, r.status_code)
    from gateway.auth.tables import LAUNCH

    with auth.store.engine.connect() as conn:
        assert conn.execute(LAUNCH.select()).first() is None  # no launch was made


def test_a_clinician_launches_one_patient_for_the_care_gaps_client(c: TestClient) -> None:
    r = c.post("/apps/ehr-launcher", data={"_step": "login", "username": "doc", "password": PASSWORD})
    assert r.status_code == 200 and SECRET_NAME in r.text and "Showing 1 to 2 of 2 patients" in r.text
    ticket = re.search(r"name=ticket value='([^']+)'", r.text).group(1)  # type: ignore[union-attr]
    unknown = c.post("/apps/ehr-launcher", data={"_step": "launch", "ticket": ticket, "patient": "nope"},
                     follow_redirects=False)
    assert unknown.status_code == 400
    done = c.post("/apps/ehr-launcher", data={"_step": "launch", "ticket": ticket, "patient": "p2"},
                  follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith("/apps/care-gaps/launch.html?iss=")
    launch = re.search(r"launch=([^&]+)", done.headers["location"]).group(1)  # type: ignore[union-attr]
    auth = c.app.state.authority
    assert auth.server.launch_context(launch, "care-gaps") == {"patient": "p2"}
    assert auth.server.launch_context(launch, "other-client") is None


def _consent(c: TestClient, user: str, **extra: str) -> tuple[str, dict[str, str]]:
    _, challenge = pkce()
    params = {"response_type": "code", "client_id": "care-gaps", "redirect_uri": REDIRECT, "aud": BASE,
              "scope": "launch/patient openid patient/*.rs", "state": secrets.token_urlsafe(8),
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    login = c.get("/auth/authorize", params=params)
    page = c.post("/auth/authorize", data={**hidden(login.text), "username": user, "password": PASSWORD})
    assert page.status_code == 200, page.text
    return page.text, hidden(page.text)


def test_the_picker_search_needs_a_live_unspent_ticket_for_this_request(c: TestClient) -> None:
    page, form = _consent(c, "doc")
    assert SECRET_NAME in page and " checked" not in page
    found = c.post("/auth/authorize", data={**form, "decision": "search", "q_name": SECRET_NAME[:3]})
    assert found.status_code == 200 and SECRET_NAME in found.text and "Able" not in found.text
    # the ticket of another authorization request (another state) does not search this one
    _, other = _consent(c, "doc")
    mixed = c.post("/auth/authorize", data={**form, "ticket": other["ticket"], "decision": "search"})
    assert mixed.status_code == 401 and SECRET_NAME not in mixed.text
    # once spent (the consent decided), the ticket searches no more
    denied = c.post("/auth/authorize", data={**form, "decision": "deny"}, follow_redirects=False)
    assert denied.status_code == 302 and "error=access_denied" in denied.headers["location"]
    spent = c.post("/auth/authorize", data={**form, "decision": "search", "q_name": SECRET_NAME})
    assert spent.status_code == 401 and SECRET_NAME not in spent.text


def test_a_patient_user_gets_no_picker_even_when_searching(c: TestClient) -> None:
    page, form = _consent(c, "pat")
    assert "id=patients" not in page and SECRET_NAME not in page and "Able" in page  # their own record only
    r = c.post("/auth/authorize", data={**form, "decision": "search", "q_name": SECRET_NAME})
    assert r.status_code == 200 and SECRET_NAME not in r.text and "id=patients" not in r.text


def test_withdrawing_an_app_revokes_only_the_users_own_tokens(c: TestClient) -> None:
    auth = c.app.state.authority
    mine = auth.tokens.issue_access("care-gaps", "user/*.rs", 300, "fam-1", "doc", {}).token
    theirs = auth.tokens.issue_access("care-gaps", "user/*.rs", 300, "fam-2", "doc2", {}).token
    other_app = auth.tokens.issue_access("other-app", "user/*.rs", 300, "fam-3", "doc", {}).token
    for t in (mine, theirs, other_app):
        assert c.get("/fhir/Patient/p1", headers=bearer(t)).status_code == 200
    # forged, misdirected or expired page tickets revoke nothing
    for ticket in ("", "x.y.z", auth_routes.user_ticket(auth, "doc", LAUNCHER_AUD),
                   auth_routes.user_ticket(auth, "doc", ttl=-10)):
        r = c.post("/auth/manage", data={"_step": "revoke", "ticket": ticket, "client_id": "care-gaps"})
        assert r.status_code == 401
    assert c.get("/fhir/Patient/p1", headers=bearer(mine)).status_code == 200
    listed = c.post("/auth/manage", data={"_step": "login", "username": "doc", "password": PASSWORD})
    assert listed.status_code == 200 and "Care gaps" in listed.text and "other-app" in listed.text
    ticket = re.search(r"name=ticket value='([^']+)'", listed.text).group(1)  # type: ignore[union-attr]
    done = c.post("/auth/manage", data={"_step": "revoke", "ticket": ticket, "client_id": "care-gaps"})
    assert done.status_code == 200 and "Access withdrawn" in done.text
    assert c.get("/fhir/Patient/p1", headers=bearer(mine)).status_code == 401
    assert c.get("/fhir/Patient/p1", headers=bearer(theirs)).status_code == 200  # another user's grant stays
    assert c.get("/fhir/Patient/p1", headers=bearer(other_app)).status_code == 200  # and the user's other apps


def test_pages_name_the_organization_and_describe_scopes_in_plain_words(store: SqlStore, tmp_path: Any) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    app = create_app(Settings(base_url=BASE, auth="smart", subscription_notifier=False, org_name="Acme & Co",
                              org_logo=str(logo)), store=store, access_log=False)
    c = TestClient(app, base_url=ORIGIN)
    page = c.get("/auth/manage")
    assert "Acme &amp; Co" in page.text and "src='http://localhost/auth/logo'" in page.text
    got = c.get("/auth/logo")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.content == logo.read_bytes()
    from gateway.auth.pages import describe_scopes

    lines = describe_scopes("patient/Observation.rs user/*.cu patient/Condition.r openid offline_access", True)
    assert lines == ["See and search the patient's observations (test results, vital signs)",
                     "Add and change health records (all kinds) of any patient you may see",
                     "See the patient's conditions and diagnoses", "Keep this access after you close the app, "
                     "until you withdraw it", "Know who you are"]
    assert describe_scopes("patient/*.rs", False) == ["See and search your health records (all kinds)"]
