"""Bulk Data export over HTTP on both databases: kick-off, polling, manifest, NDJSON files, cancel, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings
from gateway.resources.jobs import cleanup_expired
from gateway.store.sql.store import SqlStore
from tests.bulk_helpers import download, export, kickoff, load_examples, load_population, path, wait
from tests.conftest import BASE, make_client


@pytest.fixture()
def bulk(store: SqlStore, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(store, export_dir=tmp_path / "export", export_poll_min_seconds=0) as c:
        yield c


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_atr_group_export_contains_every_referenced_resource(bulk: TestClient) -> None:
    examples = load_examples(bulk)
    found = bulk.get("/fhir/Group", params={"identifier": "http://hl7.org/fhir/sid/us-npi|9941339108"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["fullexample"]
    manifest, files = export(bulk, "/fhir/Group/fullexample/$davinci-data-export?exportType=hl7.fhir.us.davinci-atr")
    assert manifest["request"].endswith("/Group/fullexample/$davinci-data-export?exportType=hl7.fhir.us.davinci-atr")
    assert manifest["error"] == [] and manifest["requiresAccessToken"] is False  # auth is off in tests
    assert [g["id"] for g in files["Group"]] == ["fullexample"]
    exported = {f"{r['resourceType']}/{r['id']}" for rs in files.values() for r in rs}
    wanted = {f"{r['resourceType']}/{r['id']}" for r in examples} - {"Group/davincipatientlistexample"}
    assert exported == wanted
    for rs in files.values():
        for r in rs:
            assert set(_refs(r)) <= exported, f"{r['resourceType']}/{r['id']} has a dangling reference"
    stored = {r["id"]: r for r in examples if r["resourceType"] == "Patient"}
    assert {p["id"] for p in files["Patient"]} == set(stored)
    assert all(p["meta"]["versionId"] == "1" for p in files["Patient"])  # latest version, as stored


def test_atr_type_subset_must_keep_group_patient_coverage(bulk: TestClient) -> None:
    load_examples(bulk)
    r = bulk.get("/fhir/Group/fullexample/$davinci-data-export", params={"_type": "Group,Patient"},
                 headers={"Prefer": "respond-async"})
    assert r.status_code == 400 and "Coverage" in r.json()["issue"][0]["diagnostics"]
    # the IG's own example spelling of the parameter and of the type
    manifest, files = export(bulk, "/fhir/Group/fullexample/$davinci-data-export?resourceTypes=GRoup,Patient,Coverage")
    assert sorted(files) == ["Coverage", "Group", "Patient"]


def test_group_export_splits_files_by_size_and_filters(store: SqlStore, tmp_path: Path) -> None:
    load_population(store, 120, "big")
    with make_client(store, export_dir=tmp_path / "x", export_poll_min_seconds=0, export_max_file_bytes=4000) as c:
        manifest, files = export(c, "/fhir/Group/big/$export?_type=Patient,Coverage,Practitioner")
        patient_files = [o for o in manifest["output"] if o["type"] == "Patient"]
        assert len(patient_files) > 1  # split by size
        assert len({o["url"] for o in manifest["output"]}) == len(manifest["output"])
        ids = [p["id"] for p in files["Patient"]]
        assert len(ids) == len(set(ids)) == 120
        assert len(files["Coverage"]) == 120 and len(files["Practitioner"]) == 1
        # _elements: top-level subset, tagged SUBSETTED
        _, sub = export(c, "/fhir/Group/big/$export?_type=Patient&_elements=identifier")
        p = sub["Patient"][0]
        assert set(p) == {"resourceType", "id", "meta", "identifier"}
        assert any(t["code"] == "SUBSETTED" for t in p["meta"]["tag"])
        # _typeFilter: a search on one type
        _, filt = export(c, "/fhir/Group/big/$export?_type=Patient&_typeFilter=Patient%3Fbirthdate%3Dge1999-01-01")
        assert filt and all(x["birthDate"] >= "1999" for x in filt["Patient"])
        assert 0 < len(filt["Patient"]) < 120
        # patient (POST only): members only; a non-member is reported in the error file
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient,Coverage"},
            {"name": "patient", "valueReference": {"reference": "Patient/m3"}},
            {"name": "patient", "valueReference": {"reference": "Patient/nobody"}}]}
        manifest, files = export(c, "/fhir/Group/big/$export", body)
        assert [p["id"] for p in files["Patient"]] == ["m3"]
        assert [x["beneficiary"]["reference"] for x in files["Coverage"]] == ["Patient/m3"]
        errors = download(c, manifest, "error")["OperationOutcome"]
        assert "Patient/nobody" in errors[0]["issue"][0]["diagnostics"]
        assert manifest["request"] == "http://testserver/fhir/Group/big/$export"


def test_since_until_and_deleted(bulk: TestClient) -> None:
    load_examples(bulk)
    _, before = export(bulk, "/fhir/$export?_type=Patient")
    cut = max(p["meta"]["lastUpdated"] for p in before["Patient"])
    import time

    time.sleep(0.01)
    p1 = before["Patient"][0]
    assert bulk.put(f"/fhir/Patient/{p1['id']}", json={**p1, "gender": "other"}).status_code == 200
    assert bulk.delete("/fhir/Patient/3").status_code in (200, 204)
    manifest, files = export(bulk, f"/fhir/$export?_type=Patient&_since={cut}")
    assert [p["id"] for p in files["Patient"]] == [p1["id"]] and files["Patient"][0]["gender"] == "other"
    deleted = download(bulk, manifest, "deleted")["Bundle"]
    assert [e["request"] for b in deleted for e in b["entry"]] == [{"method": "DELETE", "url": "Patient/3"}]
    _, until = export(bulk, f"/fhir/Patient/$export?_type=Patient&_until={cut}")
    assert sorted(p["id"] for p in until["Patient"]) == sorted(p["id"] for p in before["Patient"] if p["id"] != "3"
                                                                  and p["id"] != p1["id"])


def test_patient_level_export_covers_compartments(bulk: TestClient) -> None:
    load_examples(bulk)
    manifest, files = export(bulk, "/fhir/Patient/$export")
    assert {"Patient", "Coverage", "RelatedPerson", "Group"} <= set(files)
    assert len(files["Patient"]) == 3
    assert "Location" in files  # referenced through a PractitionerRole the Group attributes members to


def test_cancel_then_poll_is_404(bulk: TestClient, store: SqlStore) -> None:
    load_population(store, 30, "g")
    loc = kickoff(bulk, "/fhir/Group/g/$export")
    r = bulk.delete(path(loc))
    assert r.status_code == 202 and r.json()["resourceType"] == "OperationOutcome"
    r = bulk.get(path(loc))
    assert r.status_code == 404 and "cancelled" in r.json()["issue"][0]["diagnostics"]
    assert bulk.delete(path(loc)).status_code == 404


def test_over_eager_polling_gets_429(store: SqlStore, tmp_path: Path) -> None:
    load_population(store, 5, "g")
    with make_client(store, export_dir=tmp_path / "x", export_poll_min_seconds=30, export_worker=False) as c:
        loc = kickoff(c, "/fhir/Group/g/$export")
        first = c.get(path(loc))
        assert first.status_code == 202 and first.headers["X-Progress"] == "queued"
        second = c.get(path(loc))
        assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
        assert second.json()["issue"][0]["code"] == "throttled"


def test_too_many_concurrent_exports_get_429(store: SqlStore, tmp_path: Path) -> None:
    load_population(store, 3, "g")
    with make_client(store, export_dir=tmp_path / "x", export_worker=False, export_max_active_jobs=1) as c:
        kickoff(c, "/fhir/Group/g/$export")
        r = c.get("/fhir/Group/g/$export", headers={"Prefer": "respond-async"})
        assert r.status_code == 429 and r.headers["Retry-After"].isdigit()
        assert r.json()["issue"][0]["code"] == "throttled"


def test_files_are_served_only_to_the_client_that_started_the_job(store: SqlStore, tmp_path: Path) -> None:
    load_population(store, 3, "g")
    app = create_app(Settings(base_url=BASE, auth="off", export_dir=tmp_path / "x", export_poll_min_seconds=0),
                     store=store, access_log=False)

    @app.middleware("http")
    async def client_from_header(request, call_next):  # type: ignore[no-untyped-def]
        # stands in for the authentication layer, which sets request.state.client_id
        if "x-client" in request.headers:
            request.state.client_id = request.headers["x-client"]
        return await call_next(request)

    with TestClient(app, base_url="http://testserver") as c:
        loc = kickoff(c, "/fhir/Group/g/$export", **{"X-Client": "alice"})
        done = wait(c, loc, **{"X-Client": "alice"})
        assert done.status_code == 200
        url = path(done.json()["output"][0]["url"])
        assert c.get(url, headers={"X-Client": "alice"}).status_code == 200
        for other in ({"X-Client": "bob"}, {}):
            assert c.get(url, headers=other).status_code == 403
            assert c.get(path(loc), headers=other).status_code == 403
            assert c.delete(path(loc), headers=other).status_code == 403


def test_bad_kickoffs(bulk: TestClient) -> None:
    load_examples(bulk)
    cases = [
        ("/fhir/Group/nope/$export", 404),
        ("/fhir/Group/fullexample/$export?_type=Banana", 400),
        ("/fhir/Group/fullexample/$export?_type=Measure", 400),  # outside the Patient compartment
        ("/fhir/$export?_since=yesterday", 400),
        ("/fhir/$export?_since=2024-01-01", 400),  # an instant needs a time
        ("/fhir/$export?_outputFormat=text/csv", 400),
        ("/fhir/$export?patient=Patient/1", 400),
        ("/fhir/Group/fullexample/$export?patient=Patient/1", 400),  # patient is POST only
        ("/fhir/Patient/$export?_typeFilter=Patient%3Fnot-a-param%3Dx", 400),
        ("/fhir/Patient/$export?includeAssociatedData=LatestProvenance", 400),
        ("/fhir/Group/fullexample/$davinci-data-export?exportType=hl7.fhir.us.davinci-pdex", 400),
    ]
    for url, status in cases:
        r = bulk.get(url, headers={"Prefer": "respond-async"})
        assert r.status_code == status, (url, r.text)
        assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"][0]["diagnostics"]
    assert bulk.get("/fhir/$export-status/nope").status_code == 404
    # lenient handling ignores what it cannot do and says so in the error file
    r = bulk.get("/fhir/Group/fullexample/$export?_type=Patient,Measure&foo=1",
                 headers={"Prefer": "respond-async, handling=lenient"})
    manifest = wait(bulk, r.headers["Content-Location"]).json()
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    issues = [i["diagnostics"] for oo in download(bulk, manifest, "error")["OperationOutcome"] for i in oo["issue"]]
    assert any("Measure" in d for d in issues) and any("foo" in d for d in issues)


def test_expired_jobs_are_cleaned_up(bulk: TestClient, tmp_path: Path) -> None:
    load_examples(bulk)
    loc = kickoff(bulk, "/fhir/Patient/$export?_type=Patient")
    manifest = wait(bulk, loc)
    assert manifest.status_code == 200 and "Expires" in manifest.headers
    job_id = loc.rsplit("/", 1)[1]
    assert (tmp_path / "export" / job_id / "Patient-1.ndjson").exists()
    svc = bulk.app.state.bulk
    assert cleanup_expired(svc.jobs, svc.worker.handlers, now=1e12) >= 1
    assert not (tmp_path / "export" / job_id).exists()
    assert bulk.get(path(loc)).status_code == 404
    assert json.loads(bulk.get(path(manifest.json()["output"][0]["url"])).text)["resourceType"] == "OperationOutcome"


def test_large_resources_are_copied_in_pieces(store: SqlStore, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.store.sql import export_sql

    monkeypatch.setattr(export_sql, "LARGE", 1500)  # the 40-member Group (about 20 kB) is read in pieces
    monkeypatch.setattr(export_sql, "CHUNK", 1000)
    load_population(store, 40, "g")
    with make_client(store, export_dir=tmp_path / "x", export_poll_min_seconds=0) as c:
        _, files = export(c, "/fhir/Group/g/$export?_type=Group,Patient")
        assert files["Group"] == [c.get("/fhir/Group/g").json()]
        assert len(files["Patient"]) == 40
        _, sub = export(c, "/fhir/Group/g/$export?_type=Group&_elements=name")
        assert set(sub["Group"][0]) == {"resourceType", "id", "meta", "name"}
