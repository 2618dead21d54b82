"""Attacks on bulk submission (``$bulk-submit``), on SQLite and PostgreSQL with the real job worker, real
tokens and a real file server on 127.0.0.1 (loopback opened to outbound calls by explicit configuration, and
only the file server's ``/ok`` prefix on the allow-list):

- a manifest, or a file a manifest lists, outside the allow-list (another port of the same host): refused,
  never fetched, nothing stored;
- a file that redirects to a private address: redirects are not followed, nothing stored;
- a file larger than the configured bound: refused, nothing stored;
- a file holding a resource type the submitting client may not write: the whole file refused by the store
  gate under the client's recorded grant, nothing of it stored; the client's other files load;
- another client cannot read the submission's status or outcomes (403).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.conftest import wipe
from tests.jobs.harness import FileServer, manifest, ndjson, submit_params, wait_for
from tests.smart.conftest import bearer, make_auth_client

JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
MAX = 2000


@pytest.fixture()
def world(store: SqlStore) -> Iterator[tuple[TestClient, FileServer, dict[str, Any]]]:
    routes: dict[str, Any] = {}
    with FileServer(routes) as files:
        other = FileServer({})  # another service on loopback, not on the allow-list
        with other:
            wipe(store)
            patients = ndjson([{"resourceType": "Patient", "id": f"atk-{n}"} for n in range(2)])
            routes.update({
                "/ok/Patient.ndjson": (200, {}, patients),
                "/ok/Observation.ndjson": (200, {}, ndjson([{"resourceType": "Observation", "id": "atk-o",
                                                              "status": "final", "code": {"text": "x"}}])),
                "/ok/big.ndjson": (200, {}, ndjson([{"resourceType": "Patient", "id": f"big-{n}",
                                                     "name": [{"family": "x" * 100}]} for n in range(30)])),
                "/ok/redirect.ndjson": (302, {"Location": "http://10.0.0.1/Patient.ndjson"}, b""),
            })
            routes["/ok/manifest.json"] = (200, {}, manifest(files.url("/ok"), [
                ("Patient", "Patient.ndjson"), ("Observation", "Observation.ndjson"), ("Patient", "big.ndjson"),
                ("Patient", "redirect.ndjson"), ("Patient", other.url("/Patient.ndjson"))]))
            other.routes["/Patient.ndjson"] = (200, {}, patients)
            other.routes["/manifest.json"] = routes["/ok/manifest.json"]
            with make_auth_client(store, egress_allow_networks="loopback", egress_allow_http=True,
                                  bulk_submit_sources=files.url("/ok"), bulk_submit_max_file_bytes=MAX) as client:
                yield client, files, {"other": other}
            wipe(store)


def _token(client: TestClient, scope: str, client_id: str = "submitter-app") -> dict[str, str]:
    authority = client.app.state.authority  # type: ignore[attr-defined]
    return bearer(authority.tokens.issue_access(client_id, scope, 300, f"j-{client_id}", client_id, {}).token)


def _stored(client: TestClient, query: str) -> int:
    token = _token(client, "system/*.rs", "reader-app")
    r = client.get(f"/fhir/{query}&_summary=count", headers={**JSON, **token})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_bulk_submit_refuses_what_it_must(world: tuple[TestClient, FileServer, dict[str, Any]]) -> None:
    client, files, extra = world
    other: FileServer = extra["other"]
    token = {**JSON, **_token(client, "system/Patient.cu")}  # may write Patients only

    def params(*args: Any, **kw: Any) -> dict[str, Any]:  # the types it announces, so its scopes suffice
        body = submit_params(*args, **kw)
        body["parameter"].append({"name": "types", "valueString": "Patient"})
        return body

    # a manifest on another port of the same host: refused at once, not fetched, no submission recorded
    assert client.post("/fhir/$bulk-submit", headers=token,  # without naming its types: all types needed
                       json=submit_params("acme", "x-0", files.url("/ok/manifest.json"))).status_code == 403
    r = client.post("/fhir/$bulk-submit", headers=token, json=params("acme", "x-1", other.url("/manifest.json")))
    assert r.status_code == 400 and "allow-list" in r.json()["issue"][0]["diagnostics"]
    assert other.hits == []
    st = client.post("/fhir/$bulk-submit-status", headers=token, json=params("acme", "x-1"))
    assert st.status_code == 404

    r = client.post("/fhir/$bulk-submit", headers=token,
                    json=params("acme", "x-2", files.url("/ok/manifest.json"), status="completed"))
    assert r.status_code == 202, r.text
    path = r.headers["Content-Location"].split("/fhir", 1)[1]

    def finished() -> Any:
        s = client.get(f"/fhir{path}?types=Patient", headers=token)
        return s if s.status_code != 202 else None

    report = wait_for(finished, 60, "the submission to be processed", 0.2).json()
    assert [(o["type"], o["count"]) for o in report["output"]] == [("Patient", 2)]
    errors = {e["file"].rsplit("/", 1)[1]: e["diagnostics"] for e in report["error"]}
    assert set(errors) == {"Observation.ndjson", "big.ndjson", "redirect.ndjson", "Patient.ndjson"}
    assert "allow-list" in errors["Patient.ndjson"]  # the other port's file, listed in an allowed manifest
    assert "redirect" in errors["redirect.ndjson"]
    assert str(MAX) in errors["big.ndjson"]
    assert "nothing of this file was loaded" in errors["Observation.ndjson"]
    assert other.hits == []  # the file outside the allow-list was never fetched
    assert _stored(client, "Observation?_id=atk-o") == 0
    assert _stored(client, "Patient?_id=big-0,big-29") == 0
    assert _stored(client, "Patient?_id=atk-0,atk-1") == 2

    # another client: neither the status nor the outcomes
    stranger = {**JSON, **_token(client, "system/*.cu", "other-app")}
    assert client.get(f"/fhir{path}", headers=stranger).status_code == 403
    outcome_url = report["error"][0]["url"].split("/fhir", 1)[1]
    assert client.get(f"/fhir{outcome_url}", headers=stranger).status_code == 403
    assert client.get(f"/fhir{outcome_url}?types=Patient", headers=token).status_code == 200
