"""Property: whatever search a patient app sends (random types, parameters, modifiers, chains, _has,
_include/_revinclude, sorting and paging), the answer holds no resource of another patient's compartment and
no total larger than what the launch patient owns. The oracle is the data set itself: every resource is
created here with a known owner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store.sql.store import SqlStore
from tests.conftest import make_client
from tests.smart.conftest import bearer, make_auth_client

ME, OTHERS = "pa", ("pb", "pc")
LAB = "http://terminology.hl7.org/CodeSystem/observation-category"


def _data() -> tuple[list[dict[str, Any]], dict[tuple[str, str], str | None]]:
    """Resources and their owner (the patient whose compartment holds them; None for shared data)."""
    out: list[dict[str, Any]] = [{"resourceType": "Organization", "id": "org", "name": "Shared clinic"},
                                 {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Shared"}]}]
    owner: dict[tuple[str, str], str | None] = {("Organization", "org"): None, ("Practitioner", "doc"): None}
    for i, pid in enumerate((ME, *OTHERS)):
        out.append({"resourceType": "Patient", "id": pid, "gender": ["female", "male", "other"][i],
                    "birthDate": f"19{50 + i}-01-0{i + 1}", "name": [{"family": f"Fam{pid}", "given": ["Same"]}],
                    "managingOrganization": {"reference": "Organization/org"},
                    "generalPractitioner": [{"reference": "Practitioner/doc"}]})
        owner[("Patient", pid)] = pid
        for j, cat in enumerate(("laboratory", "vital-signs")):
            oid = f"obs-{pid}-{j}"
            out.append({"resourceType": "Observation", "id": oid, "status": "final",
                        "category": [{"coding": [{"system": LAB, "code": cat}]}],
                        "code": {"coding": [{"system": "http://loinc.org", "code": f"100{j}-1"}], "text": "same"},
                        "subject": {"reference": f"Patient/{pid}"}, "performer": [{"reference": "Practitioner/doc"}],
                        "effectiveDateTime": f"2024-0{j + 1}-15", "valueQuantity": {"value": 5 + i + j}})
            owner[("Observation", oid)] = pid
        cid = f"cond-{pid}"
        out.append({"resourceType": "Condition", "id": cid, "code": {"text": "same"},
                    "subject": {"reference": f"Patient/{pid}"}, "recorder": {"reference": "Practitioner/doc"}})
        owner[("Condition", cid)] = pid
        eid = f"enc-{pid}"
        out.append({"resourceType": "Encounter", "id": eid, "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": {"reference": f"Patient/{pid}"},
                    "participant": [{"individual": {"reference": "Practitioner/doc"}}]})
        owner[("Encounter", eid)] = pid
    return out, owner


DATA, OWNER = _data()
MINE = sum(1 for o in OWNER.values() if o == ME)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('property') / 'gateway.sqlite3'}")
    with make_client(store) as loader:
        for res in DATA:
            r = loader.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
            assert r.status_code == 201, r.text
    client = make_auth_client(store)
    token = client.app.state.authority.tokens.issue_access("prop-app", "patient/*.rs", 600, "p", "me",
                                                           {"patient": ME}).token
    yield client, token
    store.close()


REFS = [f"Patient/{p}" for p in (ME, *OTHERS)] + ["Practitioner/doc", "Organization/org"]
PARAMS: dict[str, st.SearchStrategy[tuple[str, str]]] = {
    "Observation": st.one_of(
        st.tuples(st.sampled_from(["subject", "patient", "performer"]), st.sampled_from(REFS)),
        st.tuples(st.just("category"), st.sampled_from(["laboratory", "vital-signs", f"{LAB}|laboratory"])),
        st.tuples(st.just("code"), st.sampled_from(["1000-1", "http://loinc.org|1001-1"])),
        st.tuples(st.just("value-quantity"), st.sampled_from(["gt5", "le7", "ge6"])),
        st.tuples(st.just("date"), st.sampled_from(["ge2024-01-01", "lt2024-02-01", "2024"])),
        st.tuples(st.just("subject:Patient.gender"), st.sampled_from(["male", "female", "other"])),
        st.tuples(st.just("subject:Patient.birthdate"), st.sampled_from(["1951-01-02", "ge1950", "lt1952"])),
        st.tuples(st.just("subject:Patient.general-practitioner"), st.just("Practitioner/doc")),
        st.tuples(st.just("_id"), st.sampled_from([f"obs-{p}-{j}" for p in (ME, *OTHERS) for j in (0, 1)]))),
    "Patient": st.one_of(
        st.tuples(st.sampled_from(["gender"]), st.sampled_from(["male", "female", "other"])),
        st.tuples(st.just("birthdate"), st.sampled_from(["ge1950", "1951-01-02", "lt1952"])),
        st.tuples(st.just("_id"), st.sampled_from([ME, *OTHERS])),
        st.tuples(st.sampled_from(["name", "family", "given"]), st.sampled_from(["Fam", "Same", "Fampb"])),
        st.tuples(st.sampled_from(["organization", "general-practitioner"]), st.sampled_from(REFS[3:])),
        st.tuples(st.just("_has:Observation:subject:category"), st.sampled_from(["laboratory", "vital-signs"])),
        st.tuples(st.just("_has:Condition:subject:code:text"), st.just("same"))),
    "Condition": st.one_of(
        st.tuples(st.sampled_from(["subject", "patient", "recorder"]), st.sampled_from(REFS)),
        st.tuples(st.just("code:text"), st.just("same")),
        st.tuples(st.just("subject:Patient.name"), st.sampled_from(["Fampb", "Same"]))),
    "Encounter": st.one_of(
        st.tuples(st.sampled_from(["subject", "patient", "participant"]), st.sampled_from(REFS)),
        st.tuples(st.just("class"), st.just("AMB")),
        st.tuples(st.just("status"), st.just("finished"))),
}
CONTROL = st.one_of(
    st.tuples(st.just("_include"), st.sampled_from(["*", "Observation:subject", "Observation:performer",
                                                    "Condition:subject", "Encounter:participant"])),
    st.tuples(st.just("_revinclude"), st.sampled_from(["*", "Observation:subject", "Condition:subject",
                                                       "Encounter:subject"])),
    st.tuples(st.just("_sort"), st.sampled_from(["_id", "-_lastUpdated", "_lastUpdated"])),
    st.tuples(st.just("_count"), st.sampled_from(["1", "2", "50"])),
    st.tuples(st.just("_total"), st.just("accurate")),
    st.tuples(st.just("_summary"), st.sampled_from(["count", "true"])),
)


@st.composite
def searches(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    rtype = draw(st.sampled_from(sorted(PARAMS)))
    params = draw(st.lists(PARAMS[rtype], max_size=3)) + draw(st.lists(CONTROL, max_size=2))
    return rtype, params


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(search=searches(), via=st.sampled_from(["get", "post", "compartment"]))
def test_patient_searches_stay_in_the_compartment(world: tuple[TestClient, str], search: Any, via: str) -> None:
    client, token = world
    rtype, params = search
    if via == "get":
        r = client.get(f"/fhir/{rtype}", params=params, headers=bearer(token))
    elif via == "post":
        r = client.post(f"/fhir/{rtype}/_search", content=urlencode(params),
                        headers={**bearer(token), "Content-Type": "application/x-www-form-urlencoded"})
    else:
        if rtype == "Patient":
            return
        r = client.get(f"/fhir/Patient/{ME}/{rtype}", params=params, headers=bearer(token))
    assert r.status_code in (200, 400, 403), (r.status_code, r.text[:300])
    if r.status_code != 200:
        assert r.json()["resourceType"] == "OperationOutcome"
        return
    bundle = r.json()
    for e in bundle.get("entry") or []:
        res = e.get("resource") or {}
        if res.get("resourceType") == "OperationOutcome":
            continue
        owner = OWNER.get((res.get("resourceType"), res.get("id")), "unknown")
        assert owner in (ME, None), (rtype, params, via, res.get("resourceType"), res.get("id"))
    assert bundle.get("total", 0) <= MINE, (rtype, params, via, bundle.get("total"))
