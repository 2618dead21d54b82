"""Attacks on DEQM ``Measure/$evaluate``'s Universal-realm subject inputs, with real tokens signed by the gateway
on SQLite and PostgreSQL: a patient token naming another patient through ``subjectGroup`` (an inline Group or
a Group reference, with or without its own ``subject``), and an attribution-restricted practitioner naming a
Group it cannot see as ``subjectGroup``. Every refusal is an OperationOutcome revealing nothing of the other
patient; the same requests under the rightful token are answered, so the refusals are the access rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.security.worlds import issued_token, loaded_world
from tests.test_evaluate_uv import PARAM_LIBRARY, PARAM_MEASURE

PA, PB = "uv-pa", "uv-pb-MARKERSECRET"
ATTRIBUTED = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"
DATA: list[dict[str, Any]] = [
    PARAM_LIBRARY, PARAM_MEASURE,
    {"resourceType": "Practitioner", "id": "uv-dr-a", "name": [{"family": "Attributed"}]},
    {"resourceType": "Practitioner", "id": "uv-dr-b", "name": [{"family": "Other"}]},
    {"resourceType": "Patient", "id": PA, "name": [{"family": "Ownfamily"}], "birthDate": "1980-01-01"},
    {"resourceType": "Patient", "id": PB, "name": [{"family": "Secretfamily"}], "birthDate": "1902-03-04"},
    {"resourceType": "Group", "id": "uv-list-a", "type": "person", "actual": True,
     "member": [{"entity": {"reference": f"Patient/{PB}"},
                 "extension": [{"url": ATTRIBUTED, "valueReference": {"reference": "Practitioner/uv-dr-a"}}]}]},
]
MARKERS = ("MARKERSECRET", "Secretfamily", "1902-03-04")


@pytest.fixture(scope="module")
def world(session_store: SqlStore) -> Iterator[TestClient]:
    with loaded_world(session_store, DATA) as client:
        yield client


token = issued_token


def evaluate(client: TestClient, headers: dict[str, str], params: list[dict[str, Any]]) -> Any:
    return client.post("/fhir/Measure/param-cohort/$evaluate", headers=headers, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "periodStart", "valueDate": "2025-01-01"}, {"name": "periodEnd", "valueDate": "2025-12-31"},
            *params]})


def inline(*pids: str) -> dict[str, Any]:
    return {"name": "subjectGroup", "resource": {"resourceType": "Group", "type": "person", "actual": True,
                                                 "member": [{"entity": {"reference": f"Patient/{p}"}} for p in pids]}}


def refused(r: Any, statuses: set[int]) -> None:
    assert r.status_code in statuses, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    leaked = [m for m in MARKERS if m in r.text]
    assert not leaked, leaked


def test_patient_token_sees_its_own_report(world: TestClient) -> None:
    h = token(world, "patient/*.rs", PA)
    r = evaluate(world, h, [{"name": "subject", "valueString": f"Patient/{PA}"}])
    assert r.status_code == 200, r.text
    mr = r.json()["parameter"][0]["resource"]["entry"][0]["resource"]
    assert mr["subject"]["reference"] == f"Patient/{PA}" and not any(m in r.text for m in MARKERS)


@pytest.mark.parametrize("scope", ["patient/*.rs", "patient/*.read"])
def test_patient_token_naming_another_patient_in_a_subject_group_is_refused(world: TestClient, scope: str) -> None:
    h = token(world, scope, PA)
    for params in ([inline(PB)], [inline(PA, PB)], [inline(PA)],  # without subject: patient tokens need it
                   [{"name": "subjectGroup", "valueString": "Group/uv-list-a"}]):
        refused(evaluate(world, h, params), {403})
    for params in ([{"name": "subject", "valueString": f"Patient/{PA}"}, inline(PB)],
                   [{"name": "subject", "valueString": f"Patient/{PA}"}, inline(PA, PB)],
                   [{"name": "subject", "valueString": f"Patient/{PA}"},
                    {"name": "subjectGroup", "valueReference": {"reference": "Group/uv-list-a"}}]):
        refused(evaluate(world, h, params), {400, 403})
    r = world.get("/fhir/Measure/param-cohort/$evaluate", headers=h, params={
        "periodStart": "2025-01-01", "periodEnd": "2025-12-31", "subjectGroup": "Group/uv-list-a"})
    refused(r, {403})


def test_restricted_practitioner_cannot_name_a_group_it_cannot_see(world: TestClient) -> None:
    other = token(world, "user/*.rs", fhir_user="Practitioner/uv-dr-b")
    for params in ([{"name": "subjectGroup", "valueString": "Group/uv-list-a"}],
                   [{"name": "subjectGroup", "valueReference": {"reference": "Group/uv-list-a"}}]):
        refused(evaluate(world, other, params), {404})
    r = world.get("/fhir/Measure/param-cohort/$evaluate", headers=other, params={
        "periodStart": "2025-01-01", "periodEnd": "2025-12-31", "subjectGroup": "Group/uv-list-a"})
    refused(r, {404})
    own = token(world, "user/*.rs", fhir_user="Practitioner/uv-dr-a")
    r = evaluate(world, own, [{"name": "subjectGroup", "valueString": "Group/uv-list-a"}])
    assert r.status_code == 200, r.text
    mr = r.json()["parameter"][0]["resource"]["entry"][0]["resource"]
    assert mr["group"][0]["population"][0]["count"] == 1
