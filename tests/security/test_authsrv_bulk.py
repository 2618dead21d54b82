"""Bulk export jobs belong to the client *and* the user that started them (issue 13, defect 13): another user
of the same app gets 403 on the status, the manifest, every file and cancel, like another client does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.smart.conftest import bearer

from .authsrv_support import fresh_client, put

ASYNC = {"Prefer": "respond-async"}


def _token(c: TestClient, client_id: str, subject: str, scope: str = "user/*.rs") -> str:
    """A token as the token endpoint issues it after user sign-in: same app, the given user."""
    auth = c.app.state.authority
    return str(auth.tokens.issue_access(client_id, scope, 300, f"family-{subject}", subject, {}).token)


def _wait(c: TestClient, url: str, token: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        r = c.get(url, headers=bearer(token))
        if r.status_code != 202:
            return r
        assert time.monotonic() < deadline, "export did not finish"
        time.sleep(0.05)


def test_another_user_of_the_same_app_cannot_use_the_job(store: SqlStore, tmp_path: Path) -> None:
    with fresh_client(store, export_dir=tmp_path / "export", export_poll_min_seconds=0) as c:
        for pid in ("p1", "p2"):
            put(c, {"resourceType": "Patient", "id": pid})
        put(c, {"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}}]})
        alice, bob = _token(c, "chart-app", "alice"), _token(c, "chart-app", "bob")
        kick = c.get("/fhir/Group/g/$export", headers={**ASYNC, **bearer(alice)})
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["Content-Location"]
        assert c.get(status_url, headers=bearer(bob)).status_code == 403
        done = _wait(c, status_url, alice)
        assert done.status_code == 200, done.text
        outputs = done.json()["output"]
        assert outputs
        for out in outputs:
            denied = c.get(out["url"], headers=bearer(bob))
            assert denied.status_code == 403 and b'"id"' not in denied.content
            assert c.get(out["url"], headers=bearer(alice)).status_code == 200
        r = c.get(status_url, headers=bearer(bob))
        assert r.status_code == 403 and "output" not in r.text
        assert c.delete(status_url, headers=bearer(bob)).status_code == 403
        assert c.get(status_url, headers=bearer(alice)).status_code == 200  # bob's cancel did nothing
        assert c.delete(status_url, headers=bearer(alice)).status_code == 202


def test_a_backend_client_still_owns_its_jobs(store: SqlStore, tmp_path: Path) -> None:
    with fresh_client(store, export_dir=tmp_path / "export", export_poll_min_seconds=0) as c:
        put(c, {"resourceType": "Patient", "id": "p1"})
        auth = c.app.state.authority
        # a client_credentials token: sub is the client itself, as the token endpoint issues it
        token = auth.tokens.issue_access("backend-1", "system/*.rs", 300, "fam").token
        kick = c.get("/fhir/Patient/$export", headers={**ASYNC, **bearer(token)})
        assert kick.status_code == 202, kick.text
        again = auth.tokens.issue_access("backend-1", "system/*.rs", 300, "fam2").token  # a later token
        assert _wait(c, kick.headers["Content-Location"], again).status_code == 200
        other = auth.tokens.issue_access("backend-2", "system/*.rs", 300, "fam3").token
        assert c.get(kick.headers["Content-Location"], headers=bearer(other)).status_code == 403
