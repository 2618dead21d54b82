"""fhirpy (the Python FHIR client on PyPI, its synchronous ``SyncFHIRClient``) against a live gateway, on
SQLite and PostgreSQL: CRUD, a chained search with ``_include``, ``fetch_all`` over several pages while
another client deletes and creates, conditional create (``get_or_create``), history, a transaction Bundle,
``$evaluate-measure`` and ``$care-gaps`` on the demo measures, and one run with a SMART Backend Services
token passed as fhirpy's ``authorization``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, ResourceNotFound

from tests.clients.conftest import Server, register_backend

pytestmark = pytest.mark.live
FHIR_JSON = {"Content-Type": "application/fhir+json"}
SYSTEM = "urn:test:fhirpy"


def fhirpy_client(server: Server, token: str | None = None, **config: Any) -> SyncFHIRClient:
    return SyncFHIRClient(server.base, authorization=f"Bearer {token}" if token else None,
                          requests_config={"timeout": 60, **config})


def test_crud(open_server: Server) -> None:
    client = fhirpy_client(open_server)
    marker = uuid.uuid4().hex
    patient = client.resource("Patient", identifier=[{"system": SYSTEM, "value": marker}],
                              name=[{"family": "Py", "given": ["Fhir"]}])
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"

    read = client.reference("Patient", patient.id).to_resource()
    assert read["name"][0]["family"] == "Py" and read["identifier"][0]["value"] == marker

    read["gender"] = "male"
    read.save()
    assert read["meta"]["versionId"] == "2"
    assert httpx.get(f"{open_server.base}/Patient/{patient.id}").json()["gender"] == "male"
    assert client.resources("Patient").search(identifier=f"{SYSTEM}|{marker}").count() == 1

    read.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", patient.id).to_resource()
    assert httpx.get(f"{open_server.base}/Patient/{patient.id}").status_code == 410
    assert client.resources("Patient").search(identifier=f"{SYSTEM}|{marker}").count() == 0


def test_chained_search_with_include(open_server: Server) -> None:
    client = fhirpy_client(open_server)
    family, code = f"Chain{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    mine = client.resource("Patient", name=[{"family": family}])
    mine.save()
    other = client.resource("Patient", name=[{"family": f"Not{family}"}])
    other.save()
    wanted = []
    for subject in (mine, mine, other):
        obs = client.resource("Observation", status="final", code={"coding": [{"system": SYSTEM, "code": code}]},
                              subject=subject.to_reference())
        obs.save()
        if subject is mine:
            wanted.append(obs.id)

    bundle = (client.resources("Observation")
              .search(**{"subject:Patient.name": family, "code": f"{SYSTEM}|{code}"})
              .include("Observation", "subject").fetch_raw())
    assert bundle["total"] == 2
    by_mode: dict[str, list[str]] = {}
    for e in bundle["entry"]:
        by_mode.setdefault(e["search"]["mode"], []).append(f"{e['resource']['resourceType']}/{e['resource']['id']}")
    assert sorted(by_mode["match"]) == sorted(f"Observation/{o}" for o in wanted)
    assert by_mode["include"] == [f"Patient/{mine.id}"]
    # fhirpy's own fetch() returns only the matches
    fetched = (client.resources("Observation").search(**{"subject:Patient.name": family})
               .include("Observation", "subject").fetch())
    assert sorted(r.id for r in fetched) == sorted(wanted)


def test_fetch_all_over_pages_while_another_client_writes(open_server: Server) -> None:
    """Nine resources exist throughout; nine more are churned by a second client (httpx) between pages: after
    each page fhirpy receives, two already-returned churn resources are deleted and two new ones created.
    Every resource that existed throughout must appear exactly once."""
    code = uuid.uuid4().hex
    with httpx.Client(base_url=open_server.base, timeout=30.0) as http:
        def create(kind: str) -> str:
            r = http.post("/Observation", headers=FHIR_JSON, json={
                "resourceType": "Observation", "status": "final", "code": {"coding": [{"system": SYSTEM, "code": code}]},
                "valueString": kind})
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        stable, churn = [], []
        for _ in range(9):  # interleaved: churn, stable, churn, stable, ...
            churn.append(create("churn"))
            stable.append(create("stable"))
        seen_churn: list[str] = []
        pages = 0

        def between_pages(response: Any, *args: Any, **kwargs: Any) -> None:
            nonlocal pages
            if "/Observation" not in response.url or response.request.method != "GET":
                return
            pages += 1
            body = response.json()
            seen_churn.extend(e["resource"]["id"] for e in body.get("entry", [])
                              if e["resource"].get("valueString") == "churn")
            for _ in range(2):
                victim = next((c for c in seen_churn if c in churn), None)
                if victim is not None:
                    churn.remove(victim)
                    assert http.delete(f"/Observation/{victim}").status_code in (200, 204)
                churn.append(create("churn"))

        client = fhirpy_client(open_server, hooks={"response": between_pages})
        everything = client.resources("Observation").search(code=f"{SYSTEM}|{code}").limit(4).fetch_all()

    assert pages >= 3
    ids = [r.id for r in everything]
    missing = [s for s in stable if s not in ids]
    doubled = [s for s in stable if ids.count(s) > 1]
    assert not missing and not doubled, f"missing {missing}, returned twice {doubled} over {pages} pages"


def test_conditional_create_history_and_transaction(open_server: Server) -> None:
    client = fhirpy_client(open_server)
    marker = uuid.uuid4().hex
    patients = client.resources("Patient").search(identifier=f"{SYSTEM}|{marker}")
    first, created = patients.get_or_create(client.resource("Patient", identifier=[{"system": SYSTEM, "value": marker}]))
    assert created is True
    again, created_again = patients.get_or_create(
        client.resource("Patient", identifier=[{"system": SYSTEM, "value": marker}], active=True))
    assert created_again is False and again.id == first.id
    assert "active" not in again  # the existing resource came back unchanged
    assert patients.count() == 1

    first["active"] = False
    first.save()
    history = client.reference("Patient", first.id).execute("_history", method="get")
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]

    pat_url = f"urn:uuid:{uuid.uuid4()}"
    tx = client.execute("/", method="post", data={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": pat_url, "resource": {"resourceType": "Patient",
                                          "identifier": [{"system": SYSTEM + ":tx", "value": marker}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "id": f"tx-{marker}", "status": "final", "code": {"text": "tx"},
                      "subject": {"reference": pat_url}},
         "request": {"method": "PUT", "url": f"Observation/tx-{marker}"}}]})
    assert tx["type"] == "transaction-response"
    assert [e["response"]["status"].split()[0] for e in tx["entry"]] == ["201", "201"]
    stored = client.resources("Patient").search(identifier=f"{SYSTEM}:tx|{marker}").get()
    obs = client.reference("Observation", f"tx-{marker}").to_resource()
    assert obs["subject"]["reference"] == f"Patient/{stored.id}"


def test_evaluate_measure_and_care_gaps(open_server: Server) -> None:
    client = fhirpy_client(open_server)
    period = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}
    measure = client.reference("Measure", "demo-breast-cancer-screening")
    report = measure.execute("$evaluate-measure", method="get", params={**period, "subject": "Patient/demo-pat-3"})
    assert report["resourceType"] == "MeasureReport" and report["subject"]["reference"] == "Patient/demo-pat-3"
    population = measure.execute("$evaluate-measure", method="get", params={
        **period, "reportType": "population", "subject": "Group/demo-group-attributed-2025"})
    assert population["type"] == "summary"
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in population["group"][0]["population"]}
    group = client.reference("Group", "demo-group-attributed-2025").to_resource()
    assert 0 < counts["initial-population"] <= len(group["member"])

    gaps = client.resources("Measure").execute("$care-gaps", method="post", data={
        "resourceType": "Parameters", "parameter": [
            {"name": "periodStart", "valueDate": "2025-01-01"}, {"name": "periodEnd", "valueDate": "2025-12-31"},
            {"name": "subject", "valueString": "Patient/demo-pat-3"},
            {"name": "measureId", "valueString": "demo-breast-cancer-screening"},
            {"name": "status", "valueString": "open-gap"}, {"name": "status", "valueString": "closed-gap"}]})
    bundles = [p["resource"] for p in gaps["parameter"] if p["name"] == "return"]
    assert len(bundles) == 1
    issues = [e["resource"] for e in bundles[0]["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    assert len(issues) == 1
    status = issues[0]["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
    numerator = counts_for(report)["numerator"]
    assert status == ("closed-gap" if numerator else "open-gap")


def counts_for(report: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def test_backend_services_token_through_fhirpy(smart_server: Server, tmp_path: Path) -> None:
    backend = register_backend(smart_server, "system/Patient.cruds system/Observation.rs", "ES384", tmp_path)
    token = backend.token("system/Patient.cruds system/Observation.rs")
    anonymous = fhirpy_client(smart_server)
    with pytest.raises(AuthorizationError):
        anonymous.resources("Patient").limit(1).fetch()

    client = fhirpy_client(smart_server, token)
    marker = uuid.uuid4().hex
    patient = client.resource("Patient", identifier=[{"system": SYSTEM, "value": marker}])
    patient.save()
    assert client.resources("Patient").search(identifier=f"{SYSTEM}|{marker}").get().id == patient.id
    demo = client.resources("Observation").search(patient="Patient/demo-pat-3").fetch_all()
    assert demo and all(o["subject"]["reference"] == "Patient/demo-pat-3" for o in demo)
    patient.delete()
