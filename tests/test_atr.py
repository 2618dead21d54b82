"""Da Vinci ATR on both databases: the official examples, atr-group rules on write, Group search, and the
member reconciliation workflow over HTTP ($member-add, $member-remove, $confirm-attribution-list,
$attribution-status, $davinci-data-export)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.fhir.atr_model import (
    EXT_CHANGE_TYPE,
    EXT_PROVIDER,
    EXT_STATUS,
    PROFILE_GROUP,
    list_status,
    member_ref,
)
from gateway.store.sql.store import SqlStore
from tests.bulk_helpers import ATR_DIR, atr_examples, export, load_examples
from tests.conftest import make_client

NPI = "http://hl7.org/fhir/sid/us-npi"


@pytest.fixture()
def atr(store: SqlStore, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(store, export_dir=tmp_path / "export", export_poll_min_seconds=0) as c:
        load_examples(c)
        yield c


def illustrative(name: str) -> dict[str, Any]:
    return json.loads((ATR_DIR / "illustrative" / f"{name}.json").read_text())


def params(**kw: dict[str, Any]) -> dict[str, Any]:
    out = []
    for name, value in kw.items():
        key = {"memberId": "valueIdentifier", "providerNpi": "valueIdentifier",
               "attributionPeriod": "valuePeriod"}.get(name, "valueReference")
        out.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": out}


def full_group(gid: str, status: str, members: list[int] | None = None) -> dict[str, Any]:
    g = json.loads((ATR_DIR / "Group-fullexample.json").read_text())
    g["id"] = gid
    g.pop("meta", None)
    g["identifier"] = [{"system": "https://example.org/contracts", "value": f"contract-{gid}"}]
    for e in g["extension"]:
        if e["url"] == EXT_STATUS:
            e["valueCode"] = status
    if members is not None:
        g["member"] = [m for i, m in enumerate(g["member"]) if i in members]
    return g


def test_official_examples_load_validate_and_read_back(atr: TestClient) -> None:
    for r in atr_examples():
        got = atr.get(f"/fhir/{r['resourceType']}/{r['id']}")
        assert got.status_code == 200
        body = got.json()
        assert {k: v for k, v in body.items() if k != "meta"} == {k: v for k, v in r.items() if k != "meta"}
    g = atr.get("/fhir/Group/fullexample").json()
    for m in g["member"]:
        for ref in [m["entity"]["reference"], *(e["valueReference"]["reference"] for e in m["extension"]
                                                 if "valueReference" in e)]:
            assert atr.get(f"/fhir/{ref}").status_code == 200, ref


def test_changetype_add_in_the_official_example_is_a_warning(atr: TestClient) -> None:
    g = atr.get("/fhir/Group/fullexample").json()
    r = atr.put("/fhir/Group/fullexample", json=g, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 200
    issues = r.json()["issue"]
    assert any(i["severity"] == "warning" and "'add'" in i["diagnostics"] for i in issues)


RULES = [
    ("no list status", lambda g: g.update(meta={"profile": [PROFILE_GROUP]},
                                          extension=[e for e in g["extension"] if e["url"] != EXT_STATUS]),
     "attributionListStatus"),
    ("two list statuses", lambda g: g["extension"].append({"url": EXT_STATUS, "valueCode": "open"}),
     "exactly one"),
    ("unknown list status", lambda g: [e.update(valueCode="pending") for e in g["extension"] if e["url"] == EXT_STATUS],
     "pending"),
    ("type not person", lambda g: g.update(type="device"), "person"),
    ("actual false", lambda g: g.update(actual=False), "actual"),
    ("no managingEntity", lambda g: g.pop("managingEntity"), "managingEntity"),
    ("managingEntity not an Organization", lambda g: g.update(managingEntity={"reference": "Practitioner/1"}),
     "managingEntity"),
    ("member not a Patient", lambda g: g["member"][0].update(entity={"reference": "Practitioner/1"}), "Patient"),
    ("coverage not a Coverage", lambda g: g["member"][0]["extension"][1].update(
        valueReference={"reference": "Patient/1"}), "coverageReference"),
    ("provider of the wrong type", lambda g: g["member"][0]["extension"][2].update(
        valueReference={"reference": "Location/1"}), "attributedProvider"),
    ("two changeTypes", lambda g: g["member"][0]["extension"].append({"url": EXT_CHANGE_TYPE, "valueCode": "new"}),
     "changeType"),
    ("final without members", lambda g: g.pop("member"), "at least one member"),
    ("contract period not a Period", lambda g: g["extension"].__setitem__(0, {
        "url": g["extension"][0]["url"], "valueString": "2025"}), "contractValidityPeriod"),
]


@pytest.mark.parametrize("name,edit,message", RULES, ids=[r[0] for r in RULES])
def test_atr_group_rules_on_write(client: TestClient, name: str, edit: Any, message: str) -> None:
    g = json.loads((ATR_DIR / "Group-fullexample.json").read_text())
    edit(g)
    r = client.put("/fhir/Group/broken", json={**g, "id": "broken"})
    assert r.status_code == 400, (name, r.text)
    assert any(message in i["diagnostics"] for i in r.json()["issue"]), r.text
    assert client.get("/fhir/Group/broken").status_code == 404  # nothing stored


def test_plain_groups_are_not_held_to_atr_rules(client: TestClient) -> None:
    g = {"resourceType": "Group", "id": "plain", "type": "device", "actual": False}
    assert client.put("/fhir/Group/plain", json=g).status_code == 201


def test_group_search(atr: TestClient) -> None:
    def ids(**q: str) -> list[str]:
        r = atr.get("/fhir/Group", params=q, headers={"Prefer": "handling=strict"})
        assert r.status_code == 200, r.text
        return sorted(e["resource"]["id"] for e in r.json().get("entry", []))

    assert ids(identifier=f"{NPI}|9941339108") == ["fullexample"]
    assert ids(identifier="urn:oid:2.16.840.1.113883.4.4|789456231") == ["fullexample"]
    assert ids(name="Test Group 3") == ["fullexample"]
    assert ids(period="ge2021-06-01") == ["fullexample"]  # the contract period reaches into June 2021
    assert ids(period="gt2021-07-01") == []
    assert ids(period="eq2020") == []  # 2020-07-25..2021-06-24 is not within 2020
    assert ids(**{"managing-entity": "Organization/1"}) == ["davincipatientlistexample", "fullexample"]
    assert "fullexample" in ids(member="Patient/3")
    assert ids(**{"attributed-provider": "PractitionerRole/1"}) == ["fullexample"]
    assert ids(type="person") == ["davincipatientlistexample", "fullexample"]
    assert ids(characteristic="attributed-to") == ["davincipatientlistexample"]
    summary = atr.get("/fhir/Group", params={"identifier": f"{NPI}|9941339108", "_summary": "true"}).json()
    g = summary["entry"][0]["resource"]
    assert "member" not in g and list_status(g) == "final"  # the status extension stays in the summary


def test_reconciliation_workflow(atr: TestClient) -> None:
    assert atr.put("/fhir/Group/draft", json=full_group("draft", "draft", [0])).status_code == 201
    found = atr.get("/fhir/Group", params={"identifier": "https://example.org/contracts|contract-draft"}).json()
    assert found["total"] == 1
    # add by memberId + providerNpi (the illustrative request): Patient/2 via Coverage/2, Practitioner/1 by NPI
    r = atr.post("/fhir/Group/draft/$member-add", json=illustrative("Parameters-member-add-memberId-providerNpi"))
    assert r.status_code == 200, r.text
    assert r.json()["issue"][0]["severity"] == "information"
    assert r.headers["ETag"] == 'W/"2"'
    g = atr.get("/fhir/Group/draft").json()
    new = g["member"][-1]
    assert new["entity"]["reference"] == "Patient/2" and member_ref(new, EXT_CHANGE_TYPE) is None
    assert [e["valueCode"] for e in new["extension"] if e["url"] == EXT_CHANGE_TYPE] == ["new"]
    assert {e["url"].rsplit("-", 1)[-1]: e.get("valueReference", {}).get("reference") for e in new["extension"]} \
        == {"changeType": None, "coverageReference": "Coverage/2", "attributedProvider": "Practitioner/1"}
    assert new["period"] == {"start": "2025-01-01", "end": "2025-12-31"}
    # add by references: the same patient to a second provider (a member repeats per provider)
    r = atr.post("/fhir/Group/draft/$member-add", json=illustrative("Parameters-member-add-references"))
    assert r.status_code == 200 and r.headers["ETag"] == 'W/"3"'
    g = atr.get("/fhir/Group/draft").json()
    assert [m["entity"]["reference"] for m in g["member"]] == ["Patient/1", "Patient/2", "Patient/2"]
    assert g["quantity"] == 2
    # the same add again changes nothing and makes no new version
    r = atr.post("/fhir/Group/draft/$member-add", json=illustrative("Parameters-member-add-references"))
    assert r.status_code == 200 and "already" in r.json()["issue"][0]["diagnostics"]
    assert atr.get("/fhir/Group/draft").json()["meta"]["versionId"] == "3"
    # remove in draft: memberId removes all of Patient/2's attributions, which stay listed as inactive/dropped
    r = atr.post("/fhir/Group/draft/$member-remove", json=illustrative("Parameters-member-remove-memberId"))
    assert r.status_code == 200 and "2 member" in r.json()["issue"][0]["diagnostics"]
    g = atr.get("/fhir/Group/draft").json()
    dropped = [m for m in g["member"] if m["entity"]["reference"] == "Patient/2"]
    assert len(dropped) == 2 and all(m["inactive"] is True for m in dropped)
    assert all([e["valueCode"] for e in m["extension"] if e["url"] == EXT_CHANGE_TYPE] == ["dropped"] for m in dropped)
    assert g["meta"]["versionId"] == "4"
    # status of a member: a Bundle of its Patient, Coverage and provider
    r = atr.post("/fhir/Group/draft/$attribution-status", json=illustrative("Parameters-attribution-status"))
    assert r.status_code == 200 and r.json()["resourceType"] == "Bundle"
    assert [e["resource"]["resourceType"] + "/" + e["resource"]["id"] for e in r.json()["entry"]] == \
        ["Patient/1", "Coverage/1", "Organization/2"]
    # export the draft list and its data
    manifest, files = export(atr, "/fhir/Group/draft/$davinci-data-export", illustrative("Parameters-davinci-data-export"))
    assert sorted(p["id"] for p in files["Patient"]) == ["1", "2"]
    # confirm: 201, final, inactive members dropped; then changes are refused
    r = atr.post("/fhir/Group/draft/$confirm-attribution-list")
    assert r.status_code == 201, r.text
    g = atr.get("/fhir/Group/draft").json()
    assert list_status(g) == "final" and [m["entity"]["reference"] for m in g["member"]] == ["Patient/1"]
    for op, body in (("member-add", illustrative("Parameters-member-add-references")),
                     ("member-remove", params(patientReference={"reference": "Patient/1"}))):
        r = atr.post(f"/fhir/Group/draft/${op}", json=body)
        assert r.status_code == 422 and "final" in r.json()["issue"][0]["diagnostics"]
    assert atr.post("/fhir/Group/draft/$confirm-attribution-list").status_code == 422
    history = atr.get("/fhir/Group/draft/_history").json()
    assert history["total"] == 5  # every change was a new version


def test_open_list_removal_deletes_the_member(atr: TestClient) -> None:
    assert atr.put("/fhir/Group/open", json=full_group("open", "open")).status_code == 201
    r = atr.post("/fhir/Group/open/$member-remove", json=illustrative("Parameters-member-remove-references"))
    assert r.status_code == 200, r.text
    g = atr.get("/fhir/Group/open").json()
    assert [m["entity"]["reference"] for m in g["member"]] == ["Patient/1", "Patient/2"]
    # patientReference + providerReference that do not match an attribution: refused with a reason
    r = atr.post("/fhir/Group/open/$member-remove", json=params(patientReference={"reference": "Patient/1"},
                                                                 providerReference={"reference": "Practitioner/1"}))
    assert r.status_code == 422 and r.json()["issue"][0]["code"] == "not-found"
    r = atr.post("/fhir/Group/open/$member-remove", json=params(
        memberId={"system": "https://example.org", "value": "789123"}, providerNpi={"system": NPI, "value": "9941339100"}))
    assert r.status_code == 200
    assert [m["entity"]["reference"] for m in atr.get("/fhir/Group/open").json()["member"]] == ["Patient/1"]
    # adding works in open status too
    r = atr.post("/fhir/Group/open/$member-add", json=illustrative("Parameters-member-add-references"))
    assert r.status_code == 200, r.text
    g = atr.get("/fhir/Group/open").json()
    assert [m["entity"]["reference"] for m in g["member"]] == ["Patient/1", "Patient/2"]
    assert member_ref(g["member"][1], EXT_PROVIDER) == "PractitionerRole/1"


def test_final_official_example_refuses_changes(atr: TestClient) -> None:
    r = atr.post("/fhir/Group/fullexample/$member-add", json=illustrative("Parameters-member-add-references"))
    assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"
    assert atr.get("/fhir/Group/fullexample").json()["meta"]["versionId"] == "1"


def test_operation_bad_input(atr: TestClient) -> None:
    assert atr.put("/fhir/Group/d", json=full_group("d", "draft", [0])).status_code == 201
    lonely = {"resourceType": "Patient", "id": "lonely", "name": [{"family": "Nocoverage"}]}
    assert atr.put("/fhir/Patient/lonely", json=lonely).status_code == 201
    cases = [
        (params(patientReference={"reference": "Patient/ghost"}, providerReference={"reference": "Practitioner/1"}),
         422, "does not exist"),
        (params(patientReference={"reference": "Patient/lonely"}, providerReference={"reference": "Practitioner/1"}),
         422, "no active Coverage"),
        (params(memberId={"system": "https://example.org", "value": "000"}, providerNpi={"system": NPI, "value": "9941339100"}),
         422, "No member"),
        (params(memberId={"system": "https://example.org", "value": "123456"}, providerNpi={"system": NPI, "value": "9941339100"}),
         422, "2 patients"),  # the examples' duplicated member id
        (params(memberId={"system": "https://example.org", "value": "789123"}, providerNpi={"system": NPI, "value": "1"}),
         422, "NPI"),
        (params(patientReference={"reference": "Patient/1"}), 400, "providerReference"),
        (params(patientReference={"reference": "Patient/1"}, providerReference={"reference": "Location/1"}),
         400, "Practitioner"),
        ({"resourceType": "Parameters", "parameter": [{"name": "bogus", "valueString": "x"}]}, 400, "bogus"),
    ]
    for body, status, text in cases:
        r = atr.post("/fhir/Group/d/$member-add", json=body)
        assert r.status_code == status, (body, r.text)
        assert text in r.json()["issue"][0]["diagnostics"], r.text
    assert atr.get("/fhir/Group/d").json()["meta"]["versionId"] == "1"
    assert atr.post("/fhir/Group/nope/$member-add", json=illustrative("Parameters-member-add-references")).status_code == 404
    r = atr.post("/fhir/Group/d/$attribution-status", json=params(patientReference={"reference": "Patient/3"}))
    assert r.status_code == 404 and "not on the attribution list" in r.json()["issue"][0]["diagnostics"]
    plain = {"resourceType": "Group", "id": "plain", "type": "person", "actual": True}
    assert atr.put("/fhir/Group/plain", json=plain).status_code == 201
    assert atr.post("/fhir/Group/plain/$confirm-attribution-list").status_code == 422


def test_davinci_export_without_group_is_404(atr: TestClient) -> None:
    body = copy.deepcopy(illustrative("Parameters-davinci-data-export"))
    r = atr.post("/fhir/Group/missing/$davinci-data-export", json=body, headers={"Prefer": "respond-async"})
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
