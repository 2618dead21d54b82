"""Re-identified copies of eCQM test patients, for the measure benchmark.

A copy of a test case keeps every clinical fact (codes, values, dates) and gets fresh identities: new
logical ids for every resource (references rewritten to match), a new name, MRN and address line. The
expected MeasureReport of the case is dropped from the copy and kept aside as the copy's expectation for
its source measure.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAMESPACE = uuid.UUID("6f1c2d1e-3d1b-4c55-9a57-0c2f3f3b6a11")
FAMILIES = ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Reyes", "Novak", "Haddad", "Kowalski", "Nguyen", "Ibarra"]
GIVENS = ["Ada", "Bruno", "Chen", "Dalia", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun"]


@dataclass(frozen=True)
class Case:
    measure: str  # source measure folder, e.g. CMS122
    case_id: str
    resources: tuple[dict[str, Any], ...]  # the case's data without its expected MeasureReport
    expected: dict[str, Any]  # the published expected individual MeasureReport


def load_cases(ecqm_dir: Path, measures: list[str]) -> list[Case]:
    cases = []
    for m in measures:
        for path in sorted((ecqm_dir / m / "tests").glob("*.json")):
            bundle = json.loads(path.read_text())
            res = [e["resource"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]
            expected = next(r for r in reversed(res) if r["resourceType"] == "MeasureReport")
            cases.append(Case(m, path.stem, tuple(r for r in res if r is not expected), expected))
    return cases


def _rewrite(node: Any, ids: dict[str, str], patient: str | None = None) -> Any:
    """References renamed; one to another case's Patient (five CMS347 cases hold data copied from other
    cases, see docs/measures.md) points at this case's Patient, as the eCQM tests load them."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                new = ids.get(v, v)
                out[k] = patient if patient and new.startswith("Patient/") and new not in ids.values() else new
            else:
                out[k] = _rewrite(v, ids, patient)
        return out
    if isinstance(node, list):
        return [_rewrite(v, ids, patient) for v in node]
    return node


def copy_case(case: Case, n: int) -> tuple[str, list[dict[str, Any]]]:
    """Copy number ``n`` of a case: (new patient id, resources)."""
    ids: dict[str, str] = {}
    for r in case.resources:
        new_id = str(uuid.uuid5(NAMESPACE, f"{case.measure}/{case.case_id}/{n}/{r['resourceType']}/{r.get('id')}"))
        ids[f"{r['resourceType']}/{r.get('id')}"] = f"{r['resourceType']}/{new_id}"
    patient_id = ""
    patient_ref = next((ids[f"Patient/{r.get('id')}"] for r in case.resources if r["resourceType"] == "Patient"), None)
    out = []
    for r in case.resources:
        c = _rewrite(r, ids, patient_ref)
        c["id"] = ids[f"{r['resourceType']}/{r.get('id')}"].split("/", 1)[1]
        c.pop("meta", None) if not (r.get("meta") or {}).get("profile") else c.__setitem__(
            "meta", {"profile": r["meta"]["profile"]})
        if c["resourceType"] == "Patient":
            patient_id = c["id"]
            c["name"] = [{"family": FAMILIES[n % len(FAMILIES)], "given": [GIVENS[(n // 10) % len(GIVENS)]]}]
            c["identifier"] = [{"system": "urn:example:bench-mrn", "value": f"B{n:07d}"}]
            if c.get("address"):
                c["address"] = [{**a, "line": [f"{100 + n % 900} Bench Street"]} for a in c["address"]]
            c.pop("telecom", None)
        out.append(c)
    return patient_id, out


def generate(cases: list[Case], count: int) -> Iterator[tuple[Case, str, list[dict[str, Any]]]]:
    """``count`` copies, cycling through the cases: (source case, patient id, resources)."""
    for n in range(count):
        case = cases[n % len(cases)]
        pid, resources = copy_case(case, n)
        yield case, pid, resources
