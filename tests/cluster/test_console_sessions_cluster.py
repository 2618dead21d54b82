"""Console sessions on two `fhir-gateway serve` processes behind one public address, on one PostgreSQL
database: a sign-in started on one instance is completed on the other (the PKCE verifier and state live in the
database, not in a process), the session then works on both, survives a restart of the instance that made it,
and signing out on one ends it on the other."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from gateway.auth.clients import ClientStore
from gateway.auth.users import add_user
from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import CONSOLE_SESSION
from tests.cluster.harness import Cluster, pg_cluster
from tests.security.authsrv_support import hidden

pytestmark = [pytest.mark.live, pytest.mark.postgres]
PUBLIC = "https://gateway.cluster.test/fhir"  # the load balancer (TLS ends there), the same for every instance
USER, PASSWORD = "console-cluster-user", "console-cluster-pw-1"
SCOPE = "openid fhirUser online_access user/*.rs user/Group.u"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with pg_cluster(tmp_path_factory.mktemp("console-sessions"), instances=2, auth="smart",
                    env={"GATEWAY_BASE_URL": PUBLIC}) as c:
        store = SqlStore(c.database, migrate=False)
        try:
            ClientStore(store.engine).register("Gateway console", SCOPE, client_id="console",
                                               redirect_uris=["https://gateway.cluster.test/console/callback"])
            add_user(store.engine, USER, PASSWORD, "Practitioner/cluster-prac")
        finally:
            store.close()
        yield c


def local(url: str) -> str:
    """The path and query of a URL on the public address (each instance is reached on its own port)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def rows(database: str) -> list[Any]:
    store = SqlStore(database, migrate=False)
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(select(CONSOLE_SESSION)).all())
    finally:
        store.close()


def test_a_console_session_spans_instances_survives_a_restart_and_ends_everywhere(cluster: Cluster) -> None:
    a, b = (s.root for s in cluster.servers)
    with httpx.Client(base_url=a, timeout=60) as ha:
        start = ha.get("/console/login", params={"next": "/console/attribution"})
        assert start.status_code == 303, start.text
        cookie = start.cookies["console_session"]
        flags = {f.strip().split("=")[0].lower() for f in start.headers["set-cookie"].split(";")[1:]}
        assert {"httponly", "secure", "samesite", "path"} <= flags  # served over https at the public address
        page = ha.get(local(start.headers["location"]))
        assert page.status_code == 200, page.text
        consent = ha.post("/auth/authorize", data={**hidden(page.text), "username": USER, "password": PASSWORD})
        back = ha.post("/auth/authorize", data={**hidden(consent.text), "decision": "allow"})
        assert back.status_code == 302, back.text
        callback = local(back.headers["location"])
    # the sign-in started on A completes on B
    with httpx.Client(base_url=b, timeout=60, cookies={"console_session": cookie}) as hb:
        done = hb.get(callback)
        assert done.status_code == 303 and done.headers["location"] == "/console/attribution", done.text
        assert "Signed in as" in hb.get("/console/attribution").text
    with httpx.Client(base_url=a, timeout=60, cookies={"console_session": cookie}) as ha:
        assert "Signed in as" in ha.get("/console/attribution").text

    # what the database holds opens nothing: the row is keyed by the cookie's hash, the tokens are sealed
    (row,) = rows(cluster.database)
    assert row.id_hash == hashlib.sha256(cookie.encode()).hexdigest() and row.username == USER
    assert cookie.encode() not in bytes(row.secret) and b"access_token" not in bytes(row.secret)

    # A restarts: the session is still good there
    cluster.stop(0)
    a = cluster.start(0).root
    with httpx.Client(base_url=a, timeout=60, cookies={"console_session": cookie}) as ha:
        page = ha.get("/console/attribution")
        assert page.status_code == 200 and "Signed in as" in page.text, page.text
        csrf = re.search(r"name=csrf value='([^']+)'", page.text)
        assert csrf is not None
    # signing out on B ends it on A too, and deletes the row
    with httpx.Client(base_url=b, timeout=60, cookies={"console_session": cookie}) as hb:
        out = hb.post("/console/logout", data={"csrf": html.unescape(csrf.group(1))})
        assert out.status_code == 200 and "signed out" in out.text
    assert rows(cluster.database) == []
    with httpx.Client(base_url=a, timeout=60, cookies={"console_session": cookie}) as ha:
        gone = ha.get("/console/attribution")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/console/login")
