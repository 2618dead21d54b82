"""Synthetic attribution data: a payer, providers, members with Coverage, and their ATR Group.

Used by the demo (an attribution list over the demo patients), by tests and by the export benchmark.
Generated as plain dicts, deterministically from the member count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..fhir.atr_model import COVERAGE_CLASS, NPI, V2_0203, make_group, make_member

PAYER_ID = "atr-payer"
PROVIDER_ORG_ID = "atr-provider-org"
CONTRACT_SYSTEM = "https://example.org/contracts"
MEMBER_SYSTEM = "https://example.org/members"


def providers(n_practitioners: int) -> Iterator[dict[str, Any]]:
    yield {"resourceType": "Organization", "id": PAYER_ID, "active": True, "name": "Example Health Plan",
           "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.4", "value": "990000001"}]}
    yield {"resourceType": "Organization", "id": PROVIDER_ORG_ID, "active": True, "name": "Example Primary Care ACO",
           "identifier": [{"system": NPI, "value": "1000000004"}]}
    for i in range(n_practitioners):
        yield {"resourceType": "Practitioner", "id": f"atr-pr-{i}", "active": True,
               "identifier": [{"system": NPI, "value": f"{1100000000 + i}"}],
               "name": [{"family": f"Provider{i}", "given": ["Pat"]}]}


def member_resources(pid: str, index: int, with_patient: bool = True) -> Iterator[dict[str, Any]]:
    if with_patient:
        yield {"resourceType": "Patient", "id": pid, "active": True,
               "identifier": [{"type": {"coding": [{"system": V2_0203, "code": "MB"}]}, "system": MEMBER_SYSTEM,
                               "value": f"M{index:08d}"}],
               "name": [{"family": f"Member{index}", "given": ["Alex"]}], "gender": "unknown",
               "birthDate": f"{1940 + index % 60}-0{1 + index % 9}-1{index % 10}"}
    yield {"resourceType": "Coverage", "id": f"cov-{pid}", "status": "active",
           "identifier": [{"type": {"coding": [{"system": V2_0203, "code": "MB"}]}, "system": MEMBER_SYSTEM,
                           "value": f"M{index:08d}"}],
           "subscriberId": f"S{index:08d}", "beneficiary": {"reference": f"Patient/{pid}"},
           "period": {"start": "2025-01-01", "end": "2025-12-31"}, "payor": [{"reference": f"Organization/{PAYER_ID}"}],
           "class": [{"type": {"coding": [{"system": COVERAGE_CLASS, "code": "plan"}]}, "value": "PLAN-A"}]}


def group_for(group_id: str, patient_ids: list[str], n_practitioners: int, status: str = "draft") -> dict[str, Any]:
    members = [make_member(f"Patient/{pid}", f"Coverage/cov-{pid}", f"Practitioner/atr-pr-{i % n_practitioners}",
                           {"start": "2025-01-01", "end": "2025-12-31"}) for i, pid in enumerate(patient_ids)]
    return make_group(group_id, f"Attribution list {group_id}", f"Organization/{PAYER_ID}", members, status,
                      npi="1000000004", contract=(CONTRACT_SYSTEM, f"contract-{group_id}"),
                      contract_period={"start": "2025-01-01", "end": "2025-12-31"})


def synthetic_population(n_members: int, group_id: str = "atr-bench", prefix: str = "m") -> Iterator[dict[str, Any]]:
    """Providers, then n members (Patient + Coverage each), then the Group listing them all."""
    n_prac = max(1, n_members // 200)
    yield from providers(n_prac)
    ids = []
    for i in range(n_members):
        pid = f"{prefix}{i}"
        ids.append(pid)
        yield from member_resources(pid, i)
    yield group_for(group_id, ids, n_prac)


DEMO_ATR_GROUP = "demo-atr-riverbend-2025"


def demo_attribution_group(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """An ATR attribution list (draft) of the demo bundle's members with active Coverage: Sunrise Health Plan's
    list for Riverbend Primary Care, each member attributed to their general practitioner."""
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    members = []
    for cov in sorted((r for r in resources if r["resourceType"] == "Coverage" and r.get("status") == "active"),
                      key=lambda r: r["id"]):
        patient = cov["beneficiary"]["reference"]
        gp = (by_ref.get(patient, {}).get("generalPractitioner") or [{}])[0].get("reference")
        members.append(make_member(patient, f"Coverage/{cov['id']}", gp or "Organization/demo-org-riverbend",
                                   {"start": "2025-01-01", "end": "2025-12-31"}))
    return make_group(DEMO_ATR_GROUP, "Riverbend Primary Care attribution list 2025", "Organization/demo-org-sunrise",
                      members, "draft", npi="1291840357", tin="931234567",
                      contract=("http://sunrise-health.example.org/contracts", "SHP-RPC-2025"),
                      contract_period={"start": "2025-01-01", "end": "2025-12-31"})
