"""Bulk Data export over HTTP, both databases: includeAssociatedData (Provenance of the exported resources) and
the `deleted` part of the manifest for a Group export with `_since` (every exported type, not only Patients)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.bulk_helpers import download, export, kickoff, load_population, wait
from tests.conftest import make_client


@pytest.fixture()
def bulk(store: SqlStore, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(store, export_dir=tmp_path / "export", export_poll_min_seconds=0) as c:
        yield c


def provenance(pid: str, targets: list[str], recorded: str) -> dict[str, Any]:
    return {"resourceType": "Provenance", "id": pid, "target": [{"reference": t} for t in targets],
            "recorded": recorded, "agent": [{"who": {"reference": "Organization/atr-payer"}}]}


def observation(oid: str, patient: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{patient}"}, "valueQuantity": {"value": 70, "unit": "kg"}}


def put(c: TestClient, r: dict[str, Any]) -> dict[str, Any]:
    resp = c.put(f"/fhir/{r['resourceType']}/{r['id']}", json=r)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


@pytest.fixture()
def with_provenance(bulk: TestClient, store: SqlStore) -> dict[str, dict[str, Any]]:
    load_population(store, 6, "g")
    put(bulk, {"resourceType": "Patient", "id": "outsider"})
    put(bulk, observation("obs-m0", "m0"))
    stored = {}
    for p in [provenance("prov-m0-old", ["Patient/m0"], "2025-01-01T10:00:00Z"),
              provenance("prov-m0-new", ["Patient/m0/_history/1"], "2025-03-01T10:00:00Z"),
              provenance("prov-cov-m1", ["Coverage/cov-m1", "Patient/m1"], "2025-02-01T10:00:00Z"),
              provenance("prov-obs-m0", ["Observation/obs-m0"], "2025-02-01T10:00:00Z"),
              provenance("prov-outsider", ["Patient/outsider"], "2025-02-01T10:00:00Z")]:
        stored[p["id"]] = put(bulk, p)
    return stored


def ids(files: dict[str, list[dict[str, Any]]], rtype: str) -> list[str]:
    return sorted(r["id"] for r in files.get(rtype, []))


def test_latest_and_relevant_provenance_of_a_group_export(bulk: TestClient,
                                                          with_provenance: dict[str, dict[str, Any]]) -> None:
    base = "/fhir/Group/g/$export?_type=Patient,Coverage"
    manifest, files = export(bulk, base + "&includeAssociatedData=LatestProvenanceResources")
    assert manifest["error"] == []
    # latest per exported target: m0's newer one (its versioned reference counts), m1's (Coverage and Patient);
    # not the Observation's (Observation is not exported), not the non-member's
    assert ids(files, "Provenance") == ["prov-cov-m1", "prov-m0-new"]
    for p in files["Provenance"]:
        assert p == with_provenance[p["id"]]  # the stored resource, as stored
    assert len(files["Patient"]) == 6 and len(files["Coverage"]) == 6

    _, files = export(bulk, base + "&includeAssociatedData=RelevantProvenanceResources")
    assert ids(files, "Provenance") == ["prov-cov-m1", "prov-m0-new", "prov-m0-old"]
    # both values: the least restrictive wins
    _, files = export(bulk, base + "&includeAssociatedData=LatestProvenanceResources,RelevantProvenanceResources")
    assert ids(files, "Provenance") == ["prov-cov-m1", "prov-m0-new", "prov-m0-old"]
    # with the Observations exported too, their Provenance goes along
    _, files = export(bulk, "/fhir/Group/g/$export?_type=Observation&includeAssociatedData=LatestProvenanceResources")
    assert ids(files, "Observation") == ["obs-m0"] and ids(files, "Provenance") == ["prov-obs-m0"]
    # without the parameter and without Provenance in _type: no Provenance
    _, files = export(bulk, base)
    assert "Provenance" not in files


def test_associated_provenance_post_and_patient_level(bulk: TestClient,
                                                      with_provenance: dict[str, dict[str, Any]]) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient"},
        {"name": "includeAssociatedData", "valueCode": "LatestProvenanceResources"},
        {"name": "patient", "valueReference": {"reference": "Patient/m1"}}]}
    _, files = export(bulk, "/fhir/Group/g/$export", body)
    assert ids(files, "Patient") == ["m1"] and ids(files, "Provenance") == ["prov-cov-m1"]
    _, files = export(bulk, "/fhir/Patient/$export?_type=Patient&includeAssociatedData=LatestProvenanceResources")
    assert ids(files, "Provenance") == ["prov-cov-m1", "prov-m0-new", "prov-outsider"]
    # Provenance asked for as a type as well: the compartment's Provenance plus the associated ones, once each
    _, files = export(bulk, "/fhir/Group/g/$export?_type=Coverage,Provenance"
                            "&includeAssociatedData=LatestProvenanceResources")
    assert ids(files, "Provenance") == ["prov-cov-m1", "prov-m0-new", "prov-m0-old"]


def test_include_associated_data_values(bulk: TestClient, with_provenance: dict[str, dict[str, Any]]) -> None:
    r = bulk.get("/fhir/Group/g/$export?includeAssociatedData=LatestProvenance",
                 headers={"Prefer": "respond-async"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert "LatestProvenance" in r.json()["issue"][0]["diagnostics"]
    # a custom value (leading underscore) this server does not define: ignored, with a warning in `error`
    manifest = wait(bulk, kickoff(bulk, "/fhir/Group/g/$export?_type=Patient&includeAssociatedData=_signatures")).json()
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    issues = [i for oo in download(bulk, manifest, "error")["OperationOutcome"] for i in oo["issue"]]
    assert [i["severity"] for i in issues] == ["warning"] and "_signatures" in issues[0]["diagnostics"]
    # lenient handling turns an unknown value into a warning as well
    r = bulk.get("/fhir/Group/g/$export?_type=Patient&includeAssociatedData=Bogus,RelevantProvenanceResources",
                 headers={"Prefer": "respond-async, handling=lenient"})
    manifest = wait(bulk, r.headers["Content-Location"]).json()
    assert sorted(o["type"] for o in manifest["output"]) == ["Patient", "Provenance"]
    issues = [i for oo in download(bulk, manifest, "error")["OperationOutcome"] for i in oo["issue"]]
    assert any("Bogus" in i["diagnostics"] for i in issues)


def test_group_since_reports_deletions_of_every_exported_type(bulk: TestClient, store: SqlStore) -> None:
    load_population(store, 6, "g")
    put(bulk, {"resourceType": "Patient", "id": "outsider"})
    for oid, pid in [("obs-m0", "m0"), ("obs-m1", "m1"), ("obs-outsider", "outsider")]:
        put(bulk, observation(oid, pid))
    put(bulk, {"resourceType": "Practitioner", "id": "unrelated"})
    cut = bulk.get("/fhir/Observation/obs-outsider").json()["meta"]["lastUpdated"]
    time.sleep(0.01)
    for ref in ["Observation/obs-m0", "Observation/obs-outsider", "Coverage/cov-m1", "Patient/m2",
                "Practitioner/atr-pr-0", "Practitioner/unrelated"]:
        assert bulk.delete(f"/fhir/{ref}").status_code in (200, 204)
    obs = put(bulk, {**observation("obs-m1", "m1"), "status": "amended"})
    manifest, files = export(bulk, f"/fhir/Group/g/$export?_type=Patient,Coverage,Observation,Practitioner&_since={cut}")
    assert [o["id"] for o in files["Observation"]] == ["obs-m1"] and files["Observation"][0] == obs
    deleted = download(bulk, manifest, "deleted")["Bundle"]
    urls = sorted(e["request"]["url"] for b in deleted for e in b["entry"])
    assert urls == ["Coverage/cov-m1", "Observation/obs-m0", "Patient/m2", "Practitioner/atr-pr-0"]
    assert all(e["request"]["method"] == "DELETE" for b in deleted for e in b["entry"])
    # the `patient` parameter narrows the deletions too
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Coverage,Observation"}, {"name": "_since", "valueInstant": cut},
        {"name": "patient", "valueReference": {"reference": "Patient/m0"}}]}
    manifest, _ = export(bulk, "/fhir/Group/g/$export", body)
    deleted = download(bulk, manifest, "deleted")["Bundle"]
    assert [e["request"]["url"] for b in deleted for e in b["entry"]] == ["Observation/obs-m0"]
    # patient level: every patient's compartment, the outsider's included
    manifest, _ = export(bulk, f"/fhir/Patient/$export?_type=Observation&_since={cut}")
    deleted = download(bulk, manifest, "deleted")["Bundle"]
    assert sorted(e["request"]["url"] for b in deleted for e in b["entry"]) == ["Observation/obs-m0",
                                                                                "Observation/obs-outsider"]
