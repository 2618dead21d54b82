"""Attacks on the console at /console/ (gateway/console), in process with authorization on: no page without a
sign-in, a forged or stale session is nothing, a sign-in answer that this browser did not start is refused, a
return path cannot leave the console, and a change posted without the session's form token never reaches the
API. The real sign-in runs through the gateway's own pages with authlib building the request."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from gateway.auth.users import add_user
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import ORIGIN, make_auth_client, wipe_auth

CONSOLE_SCOPE = "openid fhirUser online_access user/*.rs user/Group.u"
USER, PASSWORD = "console-user", "console-password-1"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('console-attacks') / 'gw.sqlite3'}")
    yield s
    s.close()


@pytest.fixture()
def console(store: SqlStore) -> Iterator[TestClient]:
    wipe_auth(store)
    with make_auth_client(store) as client:
        authority = client.app.state.authority
        authority.clients.register("Gateway console", CONSOLE_SCOPE, client_id="console",
                                   redirect_uris=[f"{ORIGIN}/console/callback"])
        add_user(store.engine, USER, PASSWORD, "Practitioner/p1")
        yield client


def _fields(page: str) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"name='([^']+)' value='([^']*)'", page)}


def sign_in(client: TestClient, next_path: str = "/console/attribution") -> Any:
    """The whole sign-in as a browser goes through it; the console's answer to the callback."""
    start = client.get("/console/login", params={"next": next_path}, follow_redirects=False)
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == ["console"]
    login = client.get(authorize)
    form = {**_fields(login.text), "username": USER, "password": PASSWORD}
    consent = client.post("/auth/authorize", data=form)
    back = client.post("/auth/authorize", data={**_fields(consent.text), "decision": "allow"}, follow_redirects=False)
    assert back.status_code == 302, back.text
    return client.get(back.headers["location"], follow_redirects=False)


def test_no_page_without_a_sign_in_and_a_forged_session_is_nothing(console: TestClient) -> None:
    for path in ("/console/", "/console/worklist", "/console/worklist.csv", "/console/attribution",
                 "/console/attribution/any"):
        r = console.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next="), (path, r.text)
        console.cookies.set("console_session", "x" * 43)
        forged = console.get(path, follow_redirects=False)
        console.cookies.clear()
        assert forged.status_code == 303 and "/console/login" in forged.headers["location"]


def test_a_sign_in_answer_not_started_here_is_refused(console: TestClient) -> None:
    console.get("/console/login", follow_redirects=False)  # a session with a pending sign-in
    r = console.get("/console/callback", params={"code": "stolen-code", "state": "someone-elses"})
    assert r.status_code == 400 and "does not belong" in r.text
    assert console.get("/console/attribution", follow_redirects=False).status_code == 303  # still signed out


def test_the_return_path_stays_in_the_console(console: TestClient) -> None:
    done = sign_in(console, "//evil.example/steal")
    assert done.status_code == 303 and done.headers["location"] == "/console/"
    assert console.get("/console/attribution").status_code == 200


def test_a_change_without_the_form_token_never_reaches_the_api(console: TestClient) -> None:
    assert sign_in(console).headers["location"] == "/console/attribution"
    page = console.get("/console/attribution")
    assert page.status_code == 200 and "Signed in as" in page.text
    for action in ("add", "remove", "confirm"):
        r = console.post(f"/console/attribution/some-list/{action}", data={"patient": "Patient/a", "csrf": "guess"},
                         follow_redirects=False)
        assert r.status_code == 400 and "form has expired" in r.text, (action, r.text)
    # with the session's token the same post reaches the API, which answers for itself (no such Group)
    token = re.search(r"name=csrf value='([^']+)'", page.text)
    assert token is not None
    r = console.post("/console/attribution/some-list/confirm", data={"csrf": html.unescape(token.group(1))},
                     follow_redirects=False)
    assert r.status_code == 303 and "failed=" in r.headers["location"]


def test_an_expired_access_token_is_refreshed_and_sign_out_ends_the_grant(store: SqlStore) -> None:
    wipe_auth(store)
    with make_auth_client(store, access_token_lifetime=1) as client:
        client.app.state.authority.clients.register("Gateway console", CONSOLE_SCOPE, client_id="console",
                                                    redirect_uris=[f"{ORIGIN}/console/callback"])
        add_user(store.engine, USER, PASSWORD, "Practitioner/p1")
        sign_in(client)
        time.sleep(2)  # the access token has expired: authlib refreshes it with the refresh token
        page = client.get("/console/attribution", follow_redirects=False)
        assert page.status_code == 200, page.headers.get("location")
        csrf = re.search(r"name=csrf value='([^']+)'", page.text)
        assert csrf is not None
        out = client.post("/console/logout", data={"csrf": html.unescape(csrf.group(1))})
        assert out.status_code == 200 and "signed out" in out.text
        assert client.get("/console/attribution", follow_redirects=False).status_code == 303


def _session_rows(store: SqlStore) -> list[Any]:
    from sqlalchemy import select

    from gateway.store.sql.tables import CONSOLE_SESSION

    with store.engine.connect() as conn:
        return list(conn.execute(select(CONSOLE_SESSION)).all())


def test_the_session_table_holds_no_usable_cookie_or_token(console: TestClient, store: SqlStore) -> None:
    import hashlib

    from sqlalchemy import delete, insert

    from gateway.store.sql.tables import CONSOLE_SESSION

    with store.engine.begin() as conn:
        conn.execute(delete(CONSOLE_SESSION))
    start = console.get("/console/login", follow_redirects=False)
    cookie_line = start.headers["set-cookie"].lower()
    assert "httponly" in cookie_line and "samesite=lax" in cookie_line and "path=/console" in cookie_line
    assert "secure" not in cookie_line  # a plain-http loopback base: a Secure cookie would never come back
    sign_in(console)
    cookie = console.cookies["console_session"]
    (row,) = _session_rows(store)
    assert row.id_hash == hashlib.sha256(cookie.encode()).hexdigest() and row.username == USER
    sealed = bytes(row.secret)
    assert cookie.encode() not in sealed and b"access_token" not in sealed and b"refresh_token" not in sealed
    # the row copied under another cookie's key does not open: that cookie is no session
    other = "y" * 43
    with store.engine.begin() as conn:
        conn.execute(insert(CONSOLE_SESSION).values(
            id_hash=hashlib.sha256(other.encode()).hexdigest(), username=row.username, fhir_user=row.fhir_user,
            secret=sealed, created=row.created, used=row.used, expires=row.expires))
    console.cookies.set("console_session", other)
    assert console.get("/console/attribution", follow_redirects=False).status_code == 303
    console.cookies.set("console_session", cookie)
    page = console.get("/console/attribution")
    assert page.status_code == 200 and "Signed in as" in page.text
    # an expired session is no session, and its row goes
    with store.engine.begin() as conn:
        conn.execute(CONSOLE_SESSION.update().where(CONSOLE_SESSION.c.id_hash == row.id_hash).values(expires=0))
    assert console.get("/console/attribution", follow_redirects=False).status_code == 303
    assert row.id_hash not in {r.id_hash for r in _session_rows(store)}


def test_a_flood_of_sign_in_starts_cannot_fill_the_session_table(console: TestClient, store: SqlStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import delete

    from gateway.console import sessions
    from gateway.store.sql.tables import CONSOLE_SESSION

    with store.engine.begin() as conn:
        conn.execute(delete(CONSOLE_SESSION))
    monkeypatch.setattr(sessions, "MAX_PENDING", 6)
    sign_in(console)  # one signed-in session, which the bound never drops
    signed = console.cookies["console_session"]
    for _ in range(20):  # cookie-less sign-in starts, each a new pending row
        fresh = TestClient(console.app, base_url=str(console.base_url))
        assert fresh.get("/console/login", follow_redirects=False).status_code == 303
    rows = _session_rows(store)
    assert len([r for r in rows if r.username is None]) <= 6
    assert [r.username for r in rows if r.username is not None] == [USER]
    console.cookies.set("console_session", signed)
    assert console.get("/console/attribution").status_code == 200
