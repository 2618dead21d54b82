"""SMART on two `fhir-gateway serve` processes behind one public address (GATEWAY_BASE_URL), on one
PostgreSQL database: a Backend Services client assertion spent on one instance is refused by the other, a
token revoked through one is refused by the other, and failed sign-ins count across both."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.auth.assertion_client import generate_client_key, sign_assertion
from gateway.auth.clients import ClientStore
from gateway.auth.users import add_user
from gateway.store.sql.store import SqlStore
from tests.cluster.harness import Cluster, pg_cluster
from tests.security.authsrv_support import hidden
from tests.smart.conftest import pkce

pytestmark = [pytest.mark.live, pytest.mark.postgres]
PUBLIC = "http://gateway.cluster.test/fhir"  # the load balancer's address, the same for every instance
TOKEN_URL = "http://gateway.cluster.test/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT = "https://app.example.org/callback"
PASSWORD = "correct horse battery"
ACCOUNT_LIMIT = 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {"GATEWAY_BASE_URL": PUBLIC, "GATEWAY_AUTH_ACCOUNT_FAILURES": str(ACCOUNT_LIMIT)}
    with pg_cluster(tmp_path_factory.mktemp("smart"), instances=2, auth="smart", env=env) as c:
        yield c


@pytest.fixture(scope="module")
def registered(cluster: Cluster) -> Iterator[dict[str, Any]]:
    """A backend client and a public app registered, users added and a patient stored, as an operator would
    with the command line (`fhir-gateway clients add`, `users add`, `load`) against the shared database."""
    store = SqlStore(cluster.database, migrate=False)
    try:
        clients = ClientStore(store.engine)
        key = generate_client_key("ES384")
        backend, _ = clients.register("cluster backend", "system/*.rs", jwks={"keys": [key.as_dict(private=False)]})
        app, _ = clients.register("chart viewer", "launch/patient openid fhirUser patient/*.rs",
                                  redirect_uris=[REDIRECT])
        add_user(store.engine, "dr-who", PASSWORD, "Practitioner/dr")
        add_user(store.engine, "locked-doc", PASSWORD, "Practitioner/doc")
        with store.session() as s:
            s.write({"resourceType": "Patient", "id": "p1", "name": [{"family": "One"}]}, "PUT")
        yield {"backend": backend.client_id, "jwk": key.as_dict(private=True), "app": app.client_id}
    finally:
        store.close()


def token_request(root: str, client_id: str, assertion: str) -> httpx.Response:
    return httpx.post(f"{root}/auth/token", data={
        "grant_type": "client_credentials", "scope": "system/*.rs", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion}, timeout=30)


def test_a_client_assertion_spent_on_one_instance_is_refused_by_the_other(
        cluster: Cluster, registered: dict[str, Any]) -> None:
    a, b = (s.root for s in cluster.servers)
    assertion = sign_assertion(registered["jwk"], registered["backend"], TOKEN_URL)
    first = token_request(a, registered["backend"], assertion)
    assert first.status_code == 200, first.text
    replay = token_request(b, registered["backend"], assertion)
    assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client", replay.text
    # the other instance does accept a fresh assertion of the same client: it refused the replay, nothing else
    fresh = token_request(b, registered["backend"], sign_assertion(registered["jwk"], registered["backend"],
                                                                   TOKEN_URL))
    assert fresh.status_code == 200, fresh.text
    # a token issued by one instance is honoured by the other (shared signing keys)
    token = first.json()["access_token"]
    r = httpx.get(f"{b}/fhir/Patient/p1", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


def _authorize(http: httpx.Client, client_id: str, user: str, password: str) -> tuple[httpx.Response, str]:
    """The login page, then the sign-in; returns the answer to the sign-in and the PKCE verifier."""
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
              "scope": "launch/patient patient/*.rs openid fhirUser", "state": secrets.token_urlsafe(16),
              "aud": PUBLIC, "code_challenge": challenge, "code_challenge_method": "S256"}
    page = http.get("/auth/authorize", params=params)
    assert page.status_code == 200 and "Sign in" in page.text, page.text
    return http.post("/auth/authorize", data={**hidden(page.text), "username": user, "password": password},
                     follow_redirects=False), verifier


def test_a_token_revoked_through_one_instance_is_refused_by_the_other(
        cluster: Cluster, registered: dict[str, Any]) -> None:
    a, b = (s.root for s in cluster.servers)
    with httpx.Client(base_url=a, timeout=30) as ha, httpx.Client(base_url=b, timeout=30) as hb:
        consent, verifier = _authorize(ha, registered["app"], "dr-who", PASSWORD)
        assert consent.status_code == 200 and "Allow access?" in consent.text, consent.text
        form = {**hidden(consent.text), "patient": "p1", "decision": "allow"}
        done = ha.post("/auth/authorize", data=form, follow_redirects=False)
        assert done.status_code == 302, done.text
        code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
        # the code issued by one instance is exchanged at the other
        tok = hb.post("/auth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                           "client_id": registered["app"], "code_verifier": verifier})
        assert tok.status_code == 200, tok.text
        bearer = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        assert hb.get("/fhir/Patient/p1", headers=bearer).status_code == 200
        assert ha.get("/fhir/Patient/p1", headers=bearer).status_code == 200
        revoked = ha.post("/auth/revoke", data={"token": tok.json()["access_token"], "client_id": registered["app"]})
        assert revoked.status_code == 200, revoked.text
        deadline = time.monotonic() + 10  # instances re-read the revocation list every 2 s
        while hb.get("/fhir/Patient/p1", headers=bearer).status_code != 401:
            assert time.monotonic() < deadline, "the other instance still honours the revoked token"
            time.sleep(0.2)
        assert ha.get("/fhir/Patient/p1", headers=bearer).status_code == 401


def test_failed_sign_ins_count_across_instances(cluster: Cluster, registered: dict[str, Any]) -> None:
    clients = [httpx.Client(base_url=s.root, timeout=30) for s in cluster.servers]
    try:
        for i in range(ACCOUNT_LIMIT):  # half the failures on each instance
            r, _ = _authorize(clients[i % 2], registered["app"], "locked-doc", "wrong password")
            assert r.status_code == 401, r.text
        for c in clients:  # locked on both, even with the right password
            r, _ = _authorize(c, registered["app"], "locked-doc", PASSWORD)
            assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text
    finally:
        for c in clients:
            c.close()
