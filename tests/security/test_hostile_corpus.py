"""The hostile-input suite: over a thousand malformed requests on every route of the app, on SQLite and
PostgreSQL, with authorization off and with a real system token. No answer may be a 500 or missing, every
4xx is an OperationOutcome (OAuth error JSON or an HTML page under /auth; a page under /apps and /console), and a refused request changes no
stored resource and no history row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
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
        if case.url.startswith(("/apps", "/console")):  # the served browser apps and the staff console: pages
            # and files (the boundary guard's refusals of a NUL or a malformed URL are OperationOutcomes there too)
            if ("html" in ctype or "text/plain" in ctype or b'"OperationOutcome"' in body) and b"Traceback" not in body:
                return None
            return f"{status} under {case.url.split('/')[1]} is neither a page nor plain text: {ctype} {body[:120]!r}"
        if b'"resourceType":"OperationOutcome"' not in body.replace(b" ", b"") and not (
                "xml" in ctype and b'<OperationOutcome xmlns="http://hl7.org/fhir">' in body):
            return f"{status} is not an OperationOutcome: {ctype} {body[:120]!r}"
        if b"Traceback" in body or b"Error(" in body:
            return f"{status} leaks internals: {body[:200]!r}"
    return None


def run_corpus(client: TestClient, store: SqlStore, headers: dict[str, str], every: int = 1
               ) -> tuple[int, list[str]]:
    """Send every ``every``-th case; (number sent, the problems found)."""
    problems: list[str] = []
    n = 0
    before = store_digest(store)
    for i, case in enumerate(cases(client.app)):
        if i % every:
            continue
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
    # with a token every other case: the token changes only the auth middleware's part, which the half
    # covers on every route; without one, the whole corpus
    n, problems = run_corpus(client, store, headers, every=2 if headers else 1)
    assert n >= (MIN_CASES if not headers else MIN_CASES // 2)
    assert not problems, f"{len(problems)} of {n} hostile requests misbehaved:\n" + "\n".join(problems[:60])


def test_corpus_covers_every_route(hostile_client: tuple[TestClient, dict[str, str]]) -> None:
    """Each route of the app (method and template) is exercised by at least one case."""
    from tests.security.hostile_corpus import PARAM, route_table

    client, _ = hostile_client
    labels = {c.label.split(" ")[0] + " " + c.label.split(" ")[1] for c in cases(client.app)}
    missing = [f"{m} {t}" for m, t in route_table(client.app) if f"{m} {t}" not in labels]
    assert not missing
    assert any(PARAM.search(t) for _, t in route_table(client.app))


SCHEMATHESIS_EXAMPLES = 5  # per operation; the corpus above carries the bulk of the hostile cases


def test_schemathesis_over_the_openapi_document(hostile_client: tuple[TestClient, dict[str, str]],
                                                store: SqlStore) -> None:
    """Requests schemathesis derives from the app's own OpenAPI document (valid and, where the document
    allows, invalid parameters) hold the same properties as the corpus."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    client, headers = hostile_client
    schema = schemathesis.openapi.from_dict(client.app.openapi())
    problems: list[str] = []
    sent = [0]

    def send(case: Any) -> None:
        kw = case.as_transport_kwargs(base_url=str(client.base_url))
        before = store_digest(store)
        req_headers = {k: v for k, v in (kw.get("headers") or {}).items()
                       if k.lower() not in ("connection", "accept-encoding", "user-agent")}
        try:
            r = client.request(kw["method"], kw["url"], params=kw.get("params"), content=_content(kw),
                               headers={**req_headers, **headers})
        except Exception as exc:  # noqa: BLE001 - an escape is a dropped connection for a real client
            problems.append(f"{case.method} {case.formatted_path}: no answer ({type(exc).__name__})")
            return
        sent[0] += 1
        label = f"{case.method} {case.formatted_path} {kw.get('params') or ''}"
        problem = _problem(Case(case.method, kw["url"].replace(str(client.base_url), "")), r.status_code,
                           r.headers.get("content-type", ""), r.content)
        if problem:
            problems.append(f"{label}: {problem}")
        if r.status_code >= 400 and store_digest(store) != before:
            problems.append(f"{label}: refused with {r.status_code} but the store changed")

    for result in schema.get_all_operations():
        operation = result.ok()
        # positive cases only: the document declares path parameters and no query or body schemas (the
        # routes read those from the request), so there is nothing for the negative mode to violate; the
        # corpus above sends the invalid queries and bodies
        @settings(max_examples=SCHEMATHESIS_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        def run(case: Any) -> None:
            send(case)

        run()
    assert sent[0] >= 100
    assert not problems, f"{len(problems)} of {sent[0]} generated requests misbehaved:\n" + "\n".join(problems[:40])


def _content(kw: dict[str, Any]) -> bytes | None:
    if kw.get("json") is not None:
        import json

        return json.dumps(kw["json"]).encode()
    data = kw.get("data") or kw.get("content")
    if isinstance(data, str):
        return data.encode()
    return data if isinstance(data, bytes) else None
