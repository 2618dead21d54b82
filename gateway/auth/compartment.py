"""Patient compartment membership of a resource, from the same compartment definition and search parameter
expressions the search index and Patient compartment search use."""

from __future__ import annotations

from typing import Any

from ..search.index import reference_values
from ..search.params import patient_compartment, registry


def compartment_types() -> dict[str, tuple[str, ...]]:
    return patient_compartment()


def compartment_patients(resource: dict[str, Any]) -> frozenset[str]:
    """The ids of every patient in whose compartment ``resource`` lies (a Patient: only itself), read by the
    compartment's own parameters: a reference in any other element does not count."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return frozenset({str(resource["id"])}) if resource.get("id") else frozenset()
    params = patient_compartment().get(str(rtype))
    if not params:
        return frozenset()
    reg = registry()
    out: set[str] = set()
    for code in params:
        sp = reg.get(str(rtype), code)
        if sp is None or sp.extract is None:
            continue
        for value in sp.extract(resource):
            for t, i, _url in reference_values(value):
                if t == "Patient" and i:
                    out.add(i)
    return frozenset(out)


def in_compartment(resource: dict[str, Any], patient_id: str) -> bool:
    """True when ``resource`` belongs to Patient/<patient_id>'s compartment (a Patient: only itself)."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id") == patient_id
    params = patient_compartment().get(str(rtype))
    if not params:
        return False
    reg = registry()
    for code in params:
        sp = reg.get(str(rtype), code)
        if sp is None or sp.extract is None:  # compartment parameters are references: they have one
            continue
        for value in sp.extract(resource):
            for t, i, _url in reference_values(value):
                if t == "Patient" and i == patient_id:
                    return True
    return False
