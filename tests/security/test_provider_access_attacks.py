"""Attacks on the Provider Access path (PDex Group/$provider-member-match and the export of its Group), with
real tokens signed by the gateway, on SQLite and PostgreSQL: a provider reading or exporting another
provider's matched Group, an opted-out member, attestations made by someone else, conflicting parts, and the
tokens that must not match at all (patient, user, a system client that is no provider, a provider without an
NPI). Every refusal is an OperationOutcome, holds nothing of the payer's records, and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import EXPORT_JOB, RESOURCE
from tests.security.worlds import issued_token, loaded_world

NPI = "http://hl7.org/fhir/sid/us-npi"
PURPOSE = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/pdex-consent-api-purpose"
SECRET = ("MARKERSECRET", "Hiddenfamily")  # only the payer's own records hold these


def coverage(cid: str, pid: str, sub: str) -> dict[str, Any]:
    return {"resourceType": "Coverage", "id": cid, "status": "active", "subscriberId": sub,
            "beneficiary": {"reference": f"Patient/{pid}"}, "payor": [{"reference": "Organization/payer"}]}


DATA: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "payer", "name": "Payer"},
    {"resourceType": "Organization", "id": "prov-a", "name": "Clinic A", "identifier": [{"system": NPI, "value": "1111111112"}]},
    {"resourceType": "Organization", "id": "prov-b", "name": "Clinic B", "identifier": [{"system": NPI, "value": "2222222223"}]},
    {"resourceType": "Organization", "id": "no-npi", "name": "No NPI clinic"},
    {"resourceType": "Patient", "id": "m1", "name": [{"family": "Alpha", "given": ["Ann"]}], "gender": "female",
     "birthDate": "1970-01-01", "telecom": [{"system": "phone", "value": "MARKERSECRET-1"}]},
    {"resourceType": "Patient", "id": "m2", "name": [{"family": "Hiddenfamily", "given": ["Bo"]}], "gender": "male",
     "birthDate": "1980-02-02"},
    {"resourceType": "Patient", "id": "m3", "name": [{"family": "Gamma", "given": ["Cy"]}], "birthDate": "1990-03-03"},
    coverage("cov-m1", "m1", "S-1"), coverage("cov-m2", "m2", "S-2"), coverage("cov-m3", "m3", "S-3"),
    {"resourceType": "Consent", "id": "optout-m2", "status": "active",
     "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
     "category": [{"coding": [{"system": PURPOSE, "code": "provider-access"}]}],
     "patient": {"reference": "Patient/m2"}, "dateTime": "2025-01-01T00:00:00Z",
     "provision": {"type": "deny", "period": {"start": "2025-01-01"}}},
    {"resourceType": "Observation", "id": "obs-m2", "status": "final", "code": {"text": "MARKERSECRET obs"},
     "subject": {"reference": "Patient/m2"}},
]
PROVIDER_SCOPE = "system/Group.rs system/Patient.rs system/Coverage.rs system/Observation.rs"


def member(family: str, birth: str, sub: str, org: str = "prov-a", pid: str = "x", **extra: Any) -> dict[str, Any]:
    consent = {"resourceType": "Consent", "status": "active", "patient": {"reference": f"Patient/{pid}"},
               "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
               "category": [{"coding": [{"system": "http://loinc.org", "code": "64292-6"}]}],
               "dateTime": "2026-01-01T00:00:00Z", "organization": [{"reference": f"Organization/{org}"}],
               "performer": [{"reference": f"Organization/{org}"}], "provision": {"type": "permit"}, **extra}
    return {"name": "MemberBundle", "part": [
        {"name": "MemberPatient", "resource": {"resourceType": "Patient", "id": pid, "name": [{"family": family}],
                                               "birthDate": birth}},
        {"name": "CoverageToMatch", "resource": {"resourceType": "Coverage", "status": "active", "subscriberId": sub,
                                                 "beneficiary": {"reference": f"Patient/{pid}"},
                                                 "payor": [{"display": "Payer"}]}},
        {"name": "Consent", "resource": consent}]}


def params(*members: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(members)}


@pytest.fixture(scope="module")
def world(session_store: SqlStore) -> Iterator[TestClient]:
    with loaded_world(session_store, DATA) as client:
        yield client


def provider(client: TestClient, org: str = "prov-a", scope: str = PROVIDER_SCOPE) -> dict[str, str]:
    return issued_token(client, scope, fhir_user=f"Organization/{org}")


def counts(store: SqlStore) -> tuple[int, int]:
    with store.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(RESOURCE)).scalar_one(),
                conn.execute(select(func.count()).select_from(EXPORT_JOB)).scalar_one())


def refused(r: Any, status: int, store: SqlStore, before: tuple[int, int]) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert not [m for m in SECRET if m in r.text], r.text
    assert counts(store) == before, "a refused request stored something"
    return dict(body)


URL = "/fhir/Group/$provider-member-match"


def test_match_lists_only_members_not_opted_out(world: TestClient, session_store: SqlStore) -> None:
    r = world.post(URL, headers=provider(world), json=params(
        member("Alpha", "1970-01-01", "S-1", pid="a1"), member("Hiddenfamily", "1980-02-02", "S-2", pid="a2"),
        member("Nobody", "1999-09-09", "S-9", pid="a3")))
    assert r.status_code == 200, r.text
    out = {p["name"]: p["resource"] for p in r.json()["parameter"]}
    assert set(out) == {"MatchedMembers", "NonMatchedMembers", "ConsentConstrainedMembers"}
    matched = out["MatchedMembers"]
    assert [m["entity"]["reference"] for m in matched["member"]] == ["Patient/m1"]
    assert "MARKERSECRET" not in r.text  # the answer holds what the provider sent, not the payer's records
    stored = world.get(f"/fhir/Group/{matched['id']}", headers=provider(world)).json()
    assert stored["extension"][0]["valueCode"] == "open" and stored["quantity"] == 1
    assert "Patient/m2" not in str(stored)
    assert out["ConsentConstrainedMembers"]["member"][0]["entity"]["reference"] == "#member-2"
    assert "id" not in out["NonMatchedMembers"]  # response-only Groups are never stored
    # another provider neither reads nor exports it
    before = counts(session_store)
    refused(world.get(f"/fhir/Group/{matched['id']}", headers=provider(world, "prov-b")), 404, session_store, before)
    refused(world.post(f"/fhir/Group/{matched['id']}/$davinci-data-export", headers={
        **provider(world, "prov-b"), "Prefer": "respond-async"}, json={"resourceType": "Parameters", "parameter": [
            {"name": "exportType", "valueString": "hl7.fhir.us.davinci-pdex#provider-download"},
            {"name": "_type", "valueString": "Patient,Observation"}]}), 404, session_store, before)
    search = world.get("/fhir/Group", headers=provider(world, "prov-b")).json()
    assert matched["id"] not in str(search)


def test_opted_out_member_alone_is_422_and_nothing_stored(world: TestClient, session_store: SqlStore) -> None:
    before = counts(session_store)
    body = refused(world.post(URL, headers=provider(world), json=params(member("Hiddenfamily", "1980-02-02", "S-2"))),
                   422, session_store, before)
    assert body["issue"][0]["code"] == "suppressed" and "opted out" in body["issue"][0]["diagnostics"]
    body = refused(world.post(URL, headers=provider(world), json=params(member("Alpha", "1970-01-01", "S-WRONG"))),
                   422, session_store, before)
    assert "no member" in body["issue"][0]["diagnostics"]
    # search syntax in a name is taken literally: no OR over other families
    body = refused(world.post(URL, headers=provider(world), json=params(member("Nobody,Alpha", "1970-01-01", "S-1"))),
                   422, session_store, before)


@pytest.mark.parametrize("case", ["other-attester", "conflicting-patient", "no-subscriber", "unknown-part",
                                  "inactive-attestation", "invalid-patient", "too-many"])
def test_bad_or_conflicting_input_is_400(world: TestClient, session_store: SqlStore, case: str) -> None:
    m = member("Alpha", "1970-01-01", "S-1", pid="a1")
    if case == "other-attester":
        m = member("Alpha", "1970-01-01", "S-1", org="prov-b", pid="a1")
    elif case == "conflicting-patient":
        m["part"][2]["resource"]["patient"] = {"reference": "Patient/someone-else"}
    elif case == "no-subscriber":
        del m["part"][1]["resource"]["subscriberId"]
    elif case == "unknown-part":
        m["part"].append({"name": "Extra", "valueString": "x"})
    elif case == "invalid-patient":
        m["part"][0]["resource"]["birthDate"] = "1970-13-45"
    elif case == "inactive-attestation":
        m["part"][2]["resource"]["status"] = "inactive"
    before = counts(session_store)
    body = params(*([m] * 1001)) if case == "too-many" else params(m)
    body = refused(world.post(URL, headers=provider(world), json=body), 400, session_store, before)
    if case == "too-many":
        assert body["issue"][0]["code"] == "too-costly"
        return
    assert "MemberBundle[0]" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("kind", ["patient", "user", "system-no-provider", "provider-without-npi", "no-group-read"])
def test_tokens_that_may_not_match(world: TestClient, session_store: SqlStore, kind: str) -> None:
    headers = {
        "patient": issued_token(world, "patient/*.rs", patient="m1"),
        "user": issued_token(world, "user/*.rs", fhir_user="Organization/prov-a"),
        "system-no-provider": issued_token(world, "system/*.rs"),
        "provider-without-npi": provider(world, "no-npi"),
        "no-group-read": provider(world, scope="system/Patient.rs"),
    }[kind]
    before = counts(session_store)
    refused(world.post(URL, headers=headers, json=params(member("Alpha", "1970-01-01", "S-1"))), 403,
            session_store, before)
    assert world.post(URL, json=params(member("Alpha", "1970-01-01", "S-1"))).status_code == 401


def test_match_in_fhir_xml(world: TestClient) -> None:
    """The operation takes and answers FHIR XML like every interaction (the CapabilityStatement says so)."""
    from gateway.fhir.xml import from_xml, to_xml

    r = world.post(URL, content=to_xml(params(member("Alpha", "1970-01-01", "S-1", pid="x1"))), headers={
        **provider(world), "Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+xml")
    out = from_xml(r.content)
    matched = next(p["resource"] for p in out["parameter"] if p["name"] == "MatchedMembers")
    assert [m["entity"]["reference"] for m in matched["member"]] == ["Patient/m1"]


def test_opt_outs_can_be_reported_as_no_match(world: TestClient, session_store: SqlStore) -> None:
    """GATEWAY_PROVIDER_ACCESS_REPORT_OPT_OUTS=false: an opted-out member is told apart from an unknown one by
    nothing (the opt-out Group profile's privacy option)."""
    settings = world.app.state.settings  # type: ignore[attr-defined]
    settings.provider_access_report_opt_outs = False
    try:
        r = world.post(URL, headers=provider(world), json=params(
            member("Alpha", "1970-01-01", "S-1", pid="a1"), member("Hiddenfamily", "1980-02-02", "S-2", pid="a2")))
        assert r.status_code == 200, r.text
        names = [p["name"] for p in r.json()["parameter"]]
        assert names == ["MatchedMembers", "NonMatchedMembers"] and "opted out" not in r.text
        before = counts(session_store)
        body = refused(world.post(URL, headers=provider(world), json=params(
            member("Hiddenfamily", "1980-02-02", "S-2"))), 422, session_store, before)
        assert body["issue"][0]["code"] == "not-found" and "opted" not in str(body)
    finally:
        settings.provider_access_report_opt_outs = True
