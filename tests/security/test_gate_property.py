"""Property: whatever a patient token searches for (any compartment type, _include, _revinclude, _has,
chains, paging), every resource it gets back lies in its own patient's compartment or is shared reference
data, and a Group shows no other member."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.auth.compartment import compartment_types, in_compartment
from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import bearer, issue, make_auth_client

PATIENTS = ("p1", "p2", "p3")
ME = "p1"
TYPES = ["Patient", "Observation", "Condition", "Encounter", "Group", "Coverage", "Procedure",
         "MedicationRequest", "Provenance"]
INCLUDES = ["Observation:subject", "Observation:performer", "Observation:encounter", "Encounter:subject",
            "Condition:subject", "Coverage:beneficiary", "Coverage:payor", "Group:member", "Provenance:target",
            "*", "Observation:patient", "Encounter:participant"]
REVINCLUDES = ["Observation:subject", "Condition:subject", "Encounter:subject", "Group:member",
               "Provenance:target", "Coverage:beneficiary", "Observation:encounter", "Procedure:subject"]
PARAMS = [("_has:Observation:subject:status", "final"), ("_has:Condition:subject:clinical-status", "active"),
          ("_has:Group:member:actual", "true"), ("subject:Patient.name", "Two"), ("subject.family", "Three"),
          ("patient.gender", "female"), ("subject", "Patient/p2"), ("patient", "p3"), ("status", "final"),
          ("_id", "o-p2-0"), ("_id", "p2"), ("member", "Patient/p3"), ("beneficiary", "Patient/p2"),
          ("encounter.subject", "Patient/p2"), ("general-practitioner", "Practitioner/dr"), ("_sort", "-_lastUpdated")]


def _data() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Doc"}]},
                                 {"resourceType": "Organization", "id": "payer", "name": "Payer"}]
    for n, pid in enumerate(PATIENTS):
        ref = {"reference": f"Patient/{pid}"}
        out += [
            {"resourceType": "Patient", "id": pid, "gender": "female" if n % 2 else "male",
             "name": [{"family": ["One", "Two", "Three"][n]}], "generalPractitioner": [{"reference": "Practitioner/dr"}]},
            {"resourceType": "Encounter", "id": f"e-{pid}", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": ref,
             "participant": [{"individual": {"reference": "Practitioner/dr"}}]},
            {"resourceType": "Condition", "id": f"c-{pid}", "subject": ref, "clinicalStatus": {"coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}},
            {"resourceType": "Coverage", "id": f"cov-{pid}", "status": "active", "beneficiary": ref,
             "payor": [{"reference": "Organization/payer"}]},
            {"resourceType": "Procedure", "id": f"pr-{pid}", "status": "completed", "subject": ref},
            {"resourceType": "Provenance", "id": f"prov-{pid}", "recorded": "2026-01-01T00:00:00Z",
             "target": [ref, {"reference": f"Encounter/e-{pid}"}], "agent": [{"who": {"reference": "Practitioner/dr"}}]},
        ]
        for i in range(3):
            out.append({"resourceType": "Observation", "id": f"o-{pid}-{i}", "status": "final",
                        "code": {"text": "x"}, "subject": ref, "encounter": {"reference": f"Encounter/e-{pid}"},
                        "performer": [{"reference": "Practitioner/dr"}, ref]})
    out.append({"resourceType": "Group", "id": "all", "type": "person", "actual": True, "quantity": 3,
                "member": [{"entity": {"reference": f"Patient/{p}"}} for p in PATIENTS]})
    out.append({"resourceType": "Group", "id": "others", "type": "person", "actual": True,
                "member": [{"entity": {"reference": f"Patient/{p}"}} for p in PATIENTS[1:]]})
    return out


@pytest.fixture()
def world(store: SqlStore) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with make_auth_client(store) as c:
        rest = RestService(store, "http://localhost/fhir")
        for r in _data():
            rest.update(r["resourceType"], r["id"], r)
        yield c, bearer(issue(c, "patient/*.rs", ME))


search = st.tuples(
    st.sampled_from(TYPES),
    st.lists(st.one_of(
        st.sampled_from(PARAMS),
        st.sampled_from(INCLUDES).map(lambda v: ("_include", v)),
        st.sampled_from(INCLUDES).map(lambda v: ("_include:iterate", v)),
        st.sampled_from(REVINCLUDES).map(lambda v: ("_revinclude", v))), max_size=4),
    st.integers(min_value=1, max_value=4))


def _allowed(res: dict[str, Any]) -> bool:
    rtype = res.get("resourceType")
    if rtype == "OperationOutcome":
        return True
    if rtype == "Group":
        return {m["entity"]["reference"] for m in res.get("member") or []} <= {f"Patient/{ME}"}
    if rtype == "Patient" or rtype in compartment_types():
        return in_compartment(res, ME)
    return True  # shared reference data (Practitioner, Organization)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=search)
@example(case=("Group", [], 2))
@example(case=("Patient", [("_revinclude", "Group:member"), ("_revinclude", "Observation:subject")], 3))
@example(case=("Observation", [("_include", "Observation:subject"), ("_has:Group:member:actual", "true")], 2))
def test_patient_searches_never_leave_the_compartment(world: tuple[TestClient, dict[str, str]],
                                                      case: tuple[str, list[tuple[str, str]], int]) -> None:
    c, token = world
    rtype, params, count = case
    r = c.get(f"/fhir/{rtype}", params=[*params, ("_count", str(count))], headers=token)
    pages = 0
    while True:
        assert r.status_code in (200, 400, 403), r.text
        if r.status_code != 200:
            return
        body = r.json()
        for e in body.get("entry") or []:
            res = e.get("resource") or {}
            assert _allowed(res), (rtype, params, res)
        nxt = next((link["url"] for link in body.get("link") or [] if link.get("relation") == "next"), None)
        pages += 1
        if nxt is None or pages >= 6:
            return
        parts = urlsplit(nxt)
        r = c.get(parts.path + ("?" + parts.query if parts.query else ""), headers=token)
