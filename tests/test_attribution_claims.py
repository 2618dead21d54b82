"""Attribution from claims (gateway/atr/claims_rule.py) on both databases: plurality of primary-care allowed
charges in the look-back window, ties to the most recent visit, and changeType against the previous list."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

from gateway.atr.attribution_claims import compute_draft
from gateway.atr.claims_rule import AttributionRule
from gateway.fhir.atr_model import EXT_CHANGE_TYPE, EXT_PROVIDER, list_status, member_ref
from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, gateway_exe

RULE = AttributionRule(dt.date(2025, 12, 31), 12)


def eob(eid: str, patient: str, provider: str, day: str, code: str, allowed: float) -> dict[str, Any]:
    return {"resourceType": "ExplanationOfBenefit", "id": eid, "status": "active", "use": "claim",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "patient": {"reference": patient}, "created": day, "insurer": {"reference": "Organization/payer"},
            "provider": {"reference": provider}, "outcome": "complete",
            "insurance": [{"focal": True, "coverage": {"reference": "Coverage/c-" + patient.split("/")[1]}}],
            "item": [{"sequence": 1, "servicedDate": day,
                      "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}]},
                      "net": {"value": allowed * 1.5, "currency": "USD"},
                      "adjudication": [{"category": {"coding": [{
                          "system": "http://terminology.hl7.org/CodeSystem/adjudication", "code": "eligible"}]},
                          "amount": {"value": allowed, "currency": "USD"}}]}]}


def claim(cid: str, patient: str, provider: str, day: str, code: str, net: float) -> dict[str, Any]:
    return {"resourceType": "Claim", "id": cid, "status": "active", "use": "claim",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "patient": {"reference": patient}, "created": day, "provider": {"reference": provider},
            "priority": {"coding": [{"code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/c-x"}}],
            "item": [{"sequence": 1, "servicedDate": day, "net": {"value": net, "currency": "USD"},
                      "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}]}}]}


def encounter(eid: str, patient: str, provider: str, day: str, code: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": eid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}]}],
            "subject": {"reference": patient}, "participant": [{"individual": {"reference": provider}}],
            "period": {"start": day}}


def base() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"resourceType": "Organization", "id": "payer", "name": "Plan"}]
    out += [{"resourceType": "Practitioner", "id": d, "name": [{"family": d}]} for d in ("a", "b", "c")]
    for p in ("p1", "p2", "p3", "p4"):
        out.append({"resourceType": "Patient", "id": p})
        out.append({"resourceType": "Coverage", "id": f"c-{p}", "status": "active", "beneficiary": {"reference": f"Patient/{p}"},
                    "payor": [{"reference": "Organization/payer"}]})
    return out


def put(rest: RestService, resources: list[dict[str, Any]]) -> None:
    for r in resources:
        rest.update(r["resourceType"], r["id"], r)


def members(g: dict[str, Any]) -> dict[str, tuple[str | None, str, bool]]:
    return {m["entity"]["reference"]: (member_ref(m, EXT_PROVIDER),
                                       next(e["valueCode"] for e in m["extension"] if e["url"] == EXT_CHANGE_TYPE),
                                       bool(m.get("inactive"))) for m in g.get("member", [])}


def test_plurality_tie_break_and_change_types(store: SqlStore) -> None:
    rest = RestService(store, "http://testserver/fhir")
    put(rest, base())
    put(rest, [
        # p1: a has more allowed charges (two visits) than b's single larger net amount... on the EOB's allowed
        eob("e1", "Patient/p1", "Practitioner/a", "2025-03-01", "99213", 90.0),
        eob("e2", "Patient/p1", "Practitioner/a", "2025-05-01", "99214", 120.0),
        eob("e3", "Patient/p1", "Practitioner/b", "2025-06-01", "99215", 200.0),  # net 300 but allowed 200
        # p2: tie 100 / 100: the most recent visit (b) wins
        claim("k1", "Patient/p2", "Practitioner/a", "2025-02-01", "99213", 100.0),
        claim("k2", "Patient/p2", "Practitioner/b", "2025-09-01", "99213", 100.0),
        # p3: only a non-primary-care code and an out-of-window visit: not attributed
        eob("e4", "Patient/p3", "Practitioner/c", "2025-04-01", "70450", 500.0),
        eob("e5", "Patient/p3", "Practitioner/c", "2024-06-01", "99213", 80.0),
        # p4: encounters only (worth 0): the most recent visit decides
        encounter("n1", "Patient/p4", "Practitioner/a", "2025-01-10", "99213"),
        encounter("n2", "Patient/p4", "Practitioner/c", "2025-05-10", "99213"),
    ])
    g, n = compute_draft(rest, "claims-list", "Organization/payer", RULE)
    assert n == 3 and list_status(g) == "draft"
    assert members(g) == {"Patient/p1": ("Practitioner/a", "new", False),
                          "Patient/p2": ("Practitioner/b", "new", False),
                          "Patient/p4": ("Practitioner/c", "new", False)}
    assert g["managingEntity"]["reference"] == "Organization/payer"
    assert all(m["extension"][1]["valueReference"]["reference"] == "Coverage/c-" + m["entity"]["reference"][8:]
               for m in g["member"])
    # new claims: p2 moves to a, p1 unchanged, p4 has no visit in the new window, p3 now qualifies
    put(rest, [claim("k3", "Patient/p2", "Practitioner/a", "2026-03-01", "99215", 400.0),
               eob("e6", "Patient/p3", "Practitioner/c", "2026-02-01", "99213", 50.0),
               eob("e7", "Patient/p1", "Practitioner/a", "2026-01-15", "99213", 90.0)])
    g2, _ = compute_draft(rest, "claims-list", "Organization/payer", AttributionRule(dt.date(2026, 6, 30), 12))
    assert g2["meta"]["versionId"] == "2"
    assert members(g2) == {"Patient/p1": ("Practitioner/a", "nochange", False),
                           "Patient/p2": ("Practitioner/a", "changed", False),
                           "Patient/p3": ("Practitioner/c", "new", False),
                           "Patient/p4": ("Practitioner/c", "dropped", True)}


def test_cli_attribute(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    store = SqlStore(db)
    rest = RestService(store, "http://testserver/fhir")
    put(rest, base() + [eob("e1", "Patient/p1", "Practitioner/a", "2025-03-01", "99213", 90.0)])
    store.close()
    run = subprocess.run([gateway_exe(), "attribute", "--group", "g1", "--payer", "Organization/payer", "--as-of",
                          "2025-12-31", "--database", db], capture_output=True, text=True, env=clean_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Group/g1 version 1: 1 patients attributed (1 new)" in run.stdout
    bad = subprocess.run([gateway_exe(), "attribute", "--group", "g1", "--payer", "Organization/payer", "--as-of",
                          "soon", "--database", db], capture_output=True, text=True, env=clean_env(), timeout=120)
    assert bad.returncode == 2 and "--as-of" in bad.stderr


def test_a_previous_member_without_a_literal_reference_does_not_break_the_next_draft() -> None:
    """A previous list may hold a member whose entity is identifier-only (ATR allows it); it matches no
    attributed patient and is left out of the comparison, while the other members still get their change."""
    from gateway.atr.claims_rule import Attribution
    from gateway.atr.draft import draft_list

    previous = {"resourceType": "Group", "member": [
        {"entity": {"identifier": {"system": "http://example.org/mbi", "value": "X1"}}},
        {"entity": {"reference": "Patient/gone"}},
        {"entity": {"reference": "Patient/p1"}}]}
    attributions = {"Patient/p1": Attribution("Patient/p1", "Practitioner/d1", 10.0, "2025-03-01", 1)}
    group = draft_list("g1", "Draft", "Organization/payer", attributions, {}, {"start": "2025-01-01"}, previous)
    changes = {m["entity"]["reference"]: (m.get("inactive", False), next(
        e["valueCode"] for e in m["extension"] if e["url"] == EXT_CHANGE_TYPE)) for m in group["member"]}
    assert changes == {"Patient/p1": (False, "changed"), "Patient/gone": (True, "dropped")}
