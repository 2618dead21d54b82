"""The Provider Access opt-out rule (auth/opt_out.py) on a real store, the PDex export types of the Bulk
kick-off, and the exported Group without opted-out members (bulk/provider_access.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.auth.context import SYSTEM, acting_as
from gateway.auth.opt_out import API_PURPOSE_CS, MATCH_RESULT_CS, OptOuts, consent_decision
from gateway.bulk.provider_access import without_members
from gateway.bulk.request import parse_export
from gateway.fhir.errors import BadRequest
from gateway.search.params import patient_compartment
from gateway.store.sql.store import SqlStore

TODAY = "2026-06-15"


def consent(pid: str, kind: str = "deny", status: str = "active", when: str = "2026-01-01T00:00:00Z",
            start: str = "2026-01-01", end: str | None = None, cid: str | None = None,
            category: str = "provider-access") -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {"resourceType": "Consent", "id": cid or f"c-{pid}-{kind}-{when[:10]}", "status": status,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": API_PURPOSE_CS, "code": category}]}],
            "patient": {"reference": f"Patient/{pid}"}, "dateTime": when,
            "provision": {"type": kind, "period": period}}


@pytest.mark.parametrize(("doc", "expected"), [
    (consent("a"), "deny"),
    (consent("a", "permit"), "permit"),
    (consent("a", status="inactive"), None),  # revoked by setting it inactive
    (consent("a", start="2027-01-01"), None),  # not yet in force
    (consent("a", end="2026-03-01"), None),  # no longer in force
    (consent("a", category="payer-to-payer"), None),  # another API's Consent
])
def test_consent_decision(doc: dict[str, Any], expected: str | None) -> None:
    assert consent_decision(doc, TODAY) == expected


def test_opt_outs_from_consents_groups_and_configuration(store: SqlStore) -> None:
    data: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": p, "identifier": [{"system": "urn:members", "value": f"M-{p}"}]}
        for p in ("a", "b", "c", "d", "e", "f")]
    data += [
        consent("a"),  # opted out
        consent("b"), consent("b", "permit", when="2026-02-01T00:00:00Z"),  # opted out, then revoked
        {"resourceType": "Group", "id": "opt-out-list", "type": "person", "actual": True,
         "code": {"coding": [{"system": MATCH_RESULT_CS, "code": "consentconstraint"}]},
         "member": [{"entity": {"reference": "Patient/c"}},
                    {"entity": {"reference": "Patient/d"}, "inactive": True}]},  # d's opt-out was revoked
        {"resourceType": "Coverage", "id": "cov-f", "status": "active", "identifier": [
            {"system": "urn:subscribers", "value": "S-F"}], "beneficiary": {"reference": "Patient/f"},
         "payor": [{"reference": "Organization/payer"}]},
    ]
    with acting_as(SYSTEM), store.session() as s:
        for res in data:
            s.write(res, "PUT")
    configured = "Patient/e, urn:subscribers|S-F"
    assert OptOuts(store, configured).opted_out() == {"a", "c", "e", "f"}
    assert OptOuts(store, configured).opted_out(["a", "b", "d"]) == {"a"}
    assert OptOuts(store).opted_out(["e", "f"]) == set()
    assert OptOuts(store).opted_out([]) == set()


def test_pdex_export_types() -> None:
    comp = patient_compartment()
    req = parse_export("group", [("exportType", "hl7.fhir.us.davinci-pdex#provider-download")], comp, "g", atr=True)
    assert req.types is None  # every type the group level covers, not the eight ATR types
    atr = parse_export("group", [("exportType", "hl7.fhir.us.davinci-atr")], comp, "g", atr=True)
    assert atr.types is not None and "Observation" not in atr.types
    with pytest.raises(BadRequest, match="_since"):
        parse_export("group", [("exportType", "hl7.fhir.us.davinci-pdex#provider-delta")], comp, "g", atr=True)
    delta = parse_export("group", [("exportType", "hl7.fhir.us.davinci-pdex#provider-delta"),
                                   ("_since", "2026-01-01T00:00:00Z")], comp, "g", atr=True)
    assert delta.since
    with pytest.raises(BadRequest, match="not supported"):
        parse_export("group", [("exportType", "hl7.fhir.us.davinci-pdex#provider-everything")], comp, "g", atr=True)


def test_exported_group_without_opted_out_members() -> None:
    group = {"resourceType": "Group", "id": "g", "quantity": 2,
             "contained": [{"resourceType": "Patient", "id": "member-1"}, {"resourceType": "Patient", "id": "member-2"}],
             "member": [{"entity": {"reference": "Patient/a", "extension": [{"valueReference": {"reference": "#member-1"}}]}},
                        {"entity": {"reference": "Patient/b", "extension": [{"valueReference": {"reference": "#member-2"}}]}}]}
    out = without_members(orjson.dumps(group), {"b"})
    assert [m["entity"]["reference"] for m in out["member"]] == ["Patient/a"]
    assert [c["id"] for c in out["contained"]] == ["member-1"] and out["quantity"] == 1
    empty = without_members(orjson.dumps(group), {"a", "b"})
    assert "member" not in empty and "contained" not in empty and empty["quantity"] == 0
