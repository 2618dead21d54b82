"""The hostile-input suite: over a thousand malformed requests on every route of the app, on SQLite and
PostgreSQL, with authorization off and with a real system token. No answer may be a 500 or missing, every
4xx is an OperationOutcome (OAuth error JSON or an HTML page under /auth), and a refused request changes no
stored resource and no history row."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.store.sql.store import SqlStore
from tests.security.hostile_corpus import SEED, Case, cases, store_digest
from tests.smart.conftest import register_backend

MIN_CASES = 1000


def _client(store: SqlStore, auth: str) -> TestClient:
    base = "http://testserver" if auth == "off" else "http://localhost"
    settings = Settings(base_url=f"{base}/fhir", auth=auth, subscription_notifier=False)
    return TestClient(create_app(settings, store=store, access_log=False), base_url=base,
                      raise_server_exceptions=False)


@pytest.fixture(params=["off", "system-token"])
def hostile_client(request: pytest.FixtureRequest, store: SqlStore) -> Iterator[tuple[TestClient, dict[str, str]]]:
    auth = "off" if request.param == "off" else "smart"
    with _client(store, auth) as c:
        headers: dict[str, str] = {}
        if auth == "smart":
            backend = register_backend(c, scope="system/*.cruds")
            headers = {"Authorization": f"Bearer {backend.token('system/*.cruds')}"}
        for res in SEED:
            r = c.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=headers)
            assert r.status_code in (200, 201), r.text
        yield c, headers


def _problem(case: Case, status: int, ctype: str, body: bytes) -> str | None:
    """What is wrong with an answer, or None when it is acceptable for a hostile request."""
    if status >= 500 and not body:
        return "no answer (connection dropped)"
    if status >= 500:
        return f"{status}: {body[:200]!r}"
    if status >= 400:
        if case.url.startswith("/auth"):
            if "json" in ctype and (b'"error"' in body or b'"OperationOutcome"' in body):
                return None
            if "html" in ctype:
                return None
            return f"{status} under /auth is neither OAuth error JSON nor a page: {ctype} {body[:120]!r}"
        if b'"resourceType":"OperationOutcome"' not in body.replace(b" ", b""):
            return f"{status} is not an OperationOutcome: {ctype} {body[:120]!r}"
        if b"Traceback" in body or b"Error(" in body:
            return f"{status} leaks internals: {body[:200]!r}"
    return None


def run_corpus(client: TestClient, store: SqlStore, headers: dict[str, str]) -> tuple[int, list[str]]:
    """Send every case; (number sent, the problems found)."""
    problems: list[str] = []
    n = 0
    before = store_digest(store)
    for case in cases(client.app):
        n += 1
        try:
            r = client.request(case.method, case.url, content=case.body,
                               headers={**case.request_headers(), **headers})
        except Exception as exc:  # noqa: BLE001 - any escape is a dropped connection for a real client
            problems.append(f"{case.label}: no answer ({type(exc).__name__})")
            before = store_digest(store)
            continue
        problem = _problem(case, r.status_code, r.headers.get("content-type", ""), r.content)
        if problem:
            problems.append(f"{case.label}: {problem}")
        after = store_digest(store)
        if r.status_code >= 400 and after != before:
            problems.append(f"{case.label}: refused with {r.status_code} but the store changed")
        before = after
    return n, problems


def test_hostile_corpus(hostile_client: tuple[TestClient, dict[str, str]], store: SqlStore) -> None:
    client, headers = hostile_client
    n, problems = run_corpus(client, store, headers)
    assert n >= MIN_CASES
    assert not problems, f"{len(problems)} of {n} hostile requests misbehaved:\n" + "\n".join(problems[:60])


def test_corpus_covers_every_route(hostile_client: tuple[TestClient, dict[str, str]]) -> None:
    """Each route of the app (method and template) is exercised by at least one case."""
    from tests.security.hostile_corpus import PARAM, route_table

    client, _ = hostile_client
    labels = {c.label.split(" ")[0] + " " + c.label.split(" ")[1] for c in cases(client.app)}
    missing = [f"{m} {t}" for m, t in route_table(client.app) if f"{m} {t}" not in labels]
    assert not missing
    assert any(PARAM.search(t) for _, t in route_table(client.app))
