"""Shared set-up of the attack suites that run on an in-process app: a store loaded with a module's data set
and a client with authorization on, and access tokens issued straight by its authority."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.conftest import make_client, wipe
from tests.smart.conftest import bearer, make_auth_client


@contextmanager
def loaded_world(store: SqlStore, data: list[dict[str, Any]]) -> Iterator[TestClient]:
    """``data`` written with authorization off (each must answer 200 or 201), then a client with it on; the
    store is emptied before and after."""
    wipe(store)
    with make_client(store) as loader:
        for res in data:
            r = loader.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
            assert r.status_code in (200, 201), r.text
    try:
        with make_auth_client(store) as client:
            yield client
    finally:
        wipe(store)


def issued_token(client: TestClient, scope: str, patient: str | None = None,
                 fhir_user: str | None = None) -> dict[str, str]:
    """The Authorization header of an access token for ``scope`` (with launch context ``patient`` and
    ``fhirUser`` when given), issued by the app's own authority as the token endpoint would."""
    ctx = {k: v for k, v in (("patient", patient), ("fhirUser", fhir_user)) if v}
    authority = client.app.state.authority  # type: ignore[attr-defined]
    return bearer(authority.tokens.issue_access("attack-app", scope, 300, "f-attack", "someone", ctx).token)
