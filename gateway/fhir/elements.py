"""_summary and _elements: reduce a resource to the requested elements (FHIR R4 search §3.1.1.5.8-9)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .element_table import type_entry

ALWAYS = ("resourceType", "id", "meta")
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "Resource encoded in summary mode"}


# kept in _summary=true beyond R4's summary flags: an ATR attribution list's status and contract period are
# Group extensions, and the IG has consumers discover lists with _summary=true (docs/integration-payer.md)
SUMMARY_EXTRA = {("extension", "Group")}


@lru_cache(maxsize=256)
def summary_elements(resource_type: str) -> frozenset[str] | None:
    """The top-level JSON element names flagged isSummary in the R4B model of ``resource_type`` (None for a
    type the models do not have), from the generated element table: no model class is built for it."""
    entry = type_entry(resource_type)
    return None if entry is None else entry.summary


def _mark(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    tags.append(SUBSETTED)
    meta["tag"] = tags
    resource["meta"] = meta
    return resource


def apply_elements(resource: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    keep = set(ALWAYS) | set(elements)
    out = {k: v for k, v in resource.items() if k in keep or any(
        k.startswith(e) and k[len(e):len(e) + 1].isupper() for e in elements)}  # choice: value -> valueQuantity
    return _mark(out)


def apply_summary(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    if mode == "text":
        out = {k: resource[k] for k in (*ALWAYS, "text") if k in resource}
        return _mark(out)
    if mode == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
        return _mark(out)
    if mode == "true":
        names = summary_elements(resource.get("resourceType", ""))
        if names is None:
            return resource
        out = {k: v for k, v in resource.items() if k in ALWAYS or k in names or (k, resource.get("resourceType"))
               in SUMMARY_EXTRA}
        return _mark(out)
    return resource
