"""End to end: a backend client gets a system/*.rs token with a signed assertion (private_key_jwt) and runs
Group/$export: kick-off, polling and downloads all need its token, and only it may read the job."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from gateway.store.sql.store import SqlStore
from tests.conftest import wipe
from tests.smart.conftest import bearer, make_auth_client, register_backend, wipe_auth

JSON = {"Content-Type": "application/fhir+json"}


def test_backend_client_exports_a_group(sqlite_store: SqlStore, tmp_path: Path) -> None:
    wipe(sqlite_store)
    wipe_auth(sqlite_store)
    with make_auth_client(sqlite_store, export_dir=tmp_path / "export", export_poll_min_seconds=0) as c:
        writer = register_backend(c, "system/*.cruds").token("system/*.cruds")
        for pid in ("p1", "p2", "p3"):
            assert c.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid},
                         headers={**JSON, **bearer(writer)}).status_code == 201
            obs = {"resourceType": "Observation", "id": f"o-{pid}", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": f"Patient/{pid}"}}
            assert c.put(f"/fhir/Observation/o-{pid}", json=obs, headers={**JSON, **bearer(writer)}).status_code == 201
        group = {"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                 "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}}]}
        assert c.put("/fhir/Group/g", json=group, headers={**JSON, **bearer(writer)}).status_code == 201

        exporter = register_backend(c, "system/*.rs", "RS384")
        token = exporter.token("system/*.rs")
        assert c.get("/fhir/Group/g/$export", headers={"Prefer": "respond-async"}).status_code == 401
        kick = c.get("/fhir/Group/g/$export", headers={"Prefer": "respond-async", **bearer(token)})
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["Content-Location"]
        other = register_backend(c, "system/*.rs").token("system/*.rs")
        deadline = time.monotonic() + 60
        while True:
            r = c.get(status_url, headers=bearer(token))
            if r.status_code == 200:
                break
            assert r.status_code == 202, r.text
            assert time.monotonic() < deadline, "export did not finish"
            time.sleep(0.05)
        manifest = r.json()
        assert manifest["requiresAccessToken"] is True and manifest["error"] == []
        # another client, even with the same scopes, may not see this job
        assert c.get(status_url, headers=bearer(other)).status_code in (403, 404)
        exported: dict[str, set[str]] = {}
        for out in manifest["output"]:
            assert c.get(out["url"]).status_code == 401
            assert c.get(out["url"], headers=bearer(other)).status_code in (403, 404)
            f = c.get(out["url"], headers=bearer(token))
            assert f.status_code == 200 and f.headers["content-type"].startswith("application/fhir+ndjson")
            exported.setdefault(out["type"], set()).update(
                orjson.loads(line)["id"] for line in f.content.splitlines() if line.strip())
        assert exported["Patient"] == {"p1", "p2"} and exported["Observation"] == {"o-p1", "o-p2"}
        assert exported["Group"] == {"g"}
