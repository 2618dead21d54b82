"""Parse and check a Bulk Data kick-off request (GET query or POST Parameters) into an ExportRequest.

Pure logic: no HTTP and no database. Everything the worker needs later is in the ExportRequest, which is
stored with the job as JSON so a restarted gateway can run it again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..fhir.dates import DateParseError, parse_range
from ..fhir.elements import apply_elements
from ..fhir.errors import BadRequest, Issue, NotSupported
from ..fhir.parameters import parameter_list
from ..fhir.resource_types import RESOURCE_TYPES
from ..store.sql.export_sql import REFERENCED_TYPES

OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
ATR_EXPORT_TYPE = "hl7.fhir.us.davinci-atr"
# the PDex Provider Access export types (docs/specs/pdex-provider-access.md): every type the group level
# covers unless _type narrows it, members who opted out left out (bulk/provider_access.py); delta needs _since
PDEX_EXPORT_TYPES = ("hl7.fhir.us.davinci-pdex#provider-delta", "hl7.fhir.us.davinci-pdex#provider-download",
                     "hl7.fhir.us.davinci-pdex#provider-snapshot")
ATR_TYPES = ("Group", "Patient", "Coverage", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization",
             "Location")
ATR_REQUIRED = ("Group", "Patient", "Coverage")
KNOWN = {"_outputFormat", "_since", "_until", "_type", "_elements", "_typeFilter", "patient",
         "includeAssociatedData", "exportType", "resourceTypes", "_format"}


@dataclass
class ExportRequest:
    level: str  # system | patient | group
    group_id: str | None = None
    types: list[str] | None = None  # None: every type the level covers
    since: str | None = None  # as stored: UTC, milliseconds, trailing Z
    until: str | None = None
    elements: list[str] | None = None
    type_filters: list[str] = field(default_factory=list)
    patients: list[str] | None = None  # Patient ids from the `patient` parameter
    export_type: str | None = None
    associated: str | None = None  # includeAssociatedData: "latest" or "relevant" Provenance of exported data
    warnings: list[dict[str, Any]] = field(default_factory=list)  # issues for the error file (lenient mode)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportRequest:
        """The request as ``to_json`` wrote it; other keys of the job's parameters (its grant) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _instant(name: str, value: str) -> str:
    try:
        lo, _ = parse_range(value)
    except DateParseError:
        raise BadRequest(f"{name} must be a FHIR instant such as 2024-01-01T00:00:00Z, got {value!r}") from None
    if "T" not in value:
        raise BadRequest(f"{name} must be a FHIR instant with a time and a time zone, got {value!r}")
    return lo[:23] + "Z"


def _csv(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def params_from_parameters(body: Any) -> list[tuple[str, str]]:
    """A POST kick-off's Parameters resource as (name, value) pairs; references become their string."""
    out: list[tuple[str, str]] = []
    for p in parameter_list(body, "A POST kick-off"):
        name = p.get("name")
        if not isinstance(name, str):
            raise BadRequest("Every parameter needs a name")
        if "valueReference" in p:
            out.append((name, str((p["valueReference"] or {}).get("reference", ""))))
            continue
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if value is None:
            raise BadRequest(f"Parameter {name!r} has no value[x]")
        out.append((name, str(value)))
    return out


ASSOCIATED = {"LatestProvenanceResources": "latest", "RelevantProvenanceResources": "relevant"}


def _associated(values: list[str], req: ExportRequest, lenient: bool) -> str | None:
    """The includeAssociatedData values: the least restrictive of the Provenance choices wins (all relevant
    Provenance covers the latest); custom ``_`` values we do not define are ignored with a warning."""
    chosen: set[str] = set()
    for v in values:
        if v in ASSOCIATED:
            chosen.add(ASSOCIATED[v])
        elif v.startswith("_"):
            req.warnings.append(Issue("warning", "not-supported",
                                      f"includeAssociatedData value {v!r} is not supported by this server; "
                                      "ignored").to_json())
        elif lenient:
            req.warnings.append(Issue("warning", "not-supported", f"includeAssociatedData value {v!r} is unknown "
                                      "(ignored: Prefer handling=lenient)").to_json())
        else:
            raise BadRequest(f"includeAssociatedData {v!r} is not a known value; use LatestProvenanceResources, "
                             "RelevantProvenanceResources or a custom value starting with '_'",
                             code="not-supported")
    if "relevant" in chosen:
        return "relevant"
    return "latest" if chosen else None


def types_for_level(level: str, compartment: dict[str, tuple[str, ...]]) -> set[str]:
    if level == "system":
        return set(RESOURCE_TYPES) - {"Parameters", "OperationOutcome", "Bundle"}
    return {"Patient", *compartment, *REFERENCED_TYPES}


def parse_export(level: str, params: list[tuple[str, str]], compartment: dict[str, tuple[str, ...]],
                 group_id: str | None = None, lenient: bool = False, method: str = "GET",
                 atr: bool = False) -> ExportRequest:
    multi: dict[str, list[str]] = {}
    req = ExportRequest(level=level, group_id=group_id)

    def unsupported(msg: str) -> None:
        if not lenient:
            raise NotSupported(msg)
        req.warnings.append(Issue("warning", "not-supported", msg + " (ignored: Prefer handling=lenient)").to_json())

    for name, value in params:
        if name not in KNOWN:
            unsupported(f"Unknown export parameter {name!r}")
            continue
        multi.setdefault(name, []).append(value)
    fmt = ",".join(multi.get("_outputFormat", [])) or OUTPUT_FORMATS[0]
    if fmt not in OUTPUT_FORMATS:
        raise BadRequest(f"_outputFormat {fmt!r} is not supported; use application/fhir+ndjson", code="not-supported")
    if "_since" in multi:
        req.since = _instant("_since", multi["_since"][-1])
    if "_until" in multi:
        req.until = _instant("_until", multi["_until"][-1])
    if req.since and req.until and req.until < req.since:
        raise BadRequest("_until is before _since")
    allowed = types_for_level(level, compartment)
    type_values = multi.get("_type", []) + multi.get("resourceTypes", [])  # resourceTypes: the ATR IG examples
    if type_values:
        types = []
        for t in _csv(type_values):
            if t.lower() == "group" and t != "Group" and atr:
                t = "Group"  # the IG's own example spells it "GRoup"
            if t not in RESOURCE_TYPES:
                if lenient:
                    unsupported(f"_type {t!r} is not a FHIR R4 resource type")
                    continue
                raise BadRequest(f"_type {t!r} is not a FHIR R4 resource type", code="not-supported")
            if t not in allowed:
                unsupported(f"_type {t} cannot be exported at the {level} level (outside the Patient compartment)")
                continue
            if t not in types:
                types.append(t)
        req.types = types
    if "_elements" in multi:
        req.elements = _csv(multi["_elements"])
    for tf in _csv(multi.get("_typeFilter", [])):
        tf = unquote(tf) if "?" not in tf else tf
        rtype, sep, query = tf.partition("?")
        if not sep or rtype not in RESOURCE_TYPES:
            raise BadRequest(f"_typeFilter {tf!r} must be ResourceType?search-parameters")
        if any(k in ("_include", "_revinclude", "_sort") or k.startswith("_include") for k, _ in parse_qsl(query)):
            raise BadRequest(f"_typeFilter {tf!r} may not use _include, _revinclude or _sort")
        req.type_filters.append(tf)
    if "patient" in multi:
        if level == "system":
            raise BadRequest("The patient parameter is not allowed on a system-level export")
        if method != "POST" and not atr:
            raise BadRequest("The patient parameter is only accepted in a POST kick-off (Parameters body)")
        ids = []
        for ref in _csv(multi["patient"]):
            parts = ref.rstrip("/").split("/")
            if len(parts) < 2 or parts[-2] != "Patient" or not parts[-1]:
                raise BadRequest(f"patient {ref!r} is not a Patient reference (Patient/[id])")
            if parts[-1] not in ids:
                ids.append(parts[-1])
        req.patients = ids
    if "includeAssociatedData" in multi:
        req.associated = _associated(_csv(multi["includeAssociatedData"]), req, lenient)
    if "exportType" in multi:
        req.export_type = multi["exportType"][-1]
        if req.export_type not in (ATR_EXPORT_TYPE, *PDEX_EXPORT_TYPES):
            raise BadRequest(f"exportType {req.export_type!r} is not supported; use {ATR_EXPORT_TYPE} or one of "
                             f"{', '.join(PDEX_EXPORT_TYPES)}", code="not-supported")
        if req.export_type == PDEX_EXPORT_TYPES[0] and not req.since:
            raise BadRequest("exportType hl7.fhir.us.davinci-pdex#provider-delta needs _since (the time of the "
                             "client's previous retrieval)")
    if atr and req.export_type not in PDEX_EXPORT_TYPES:
        if req.types is None:
            req.types = list(ATR_TYPES)
        else:
            missing = [t for t in ATR_REQUIRED if t not in req.types]
            if missing:
                raise BadRequest(f"A $davinci-data-export _type must include Group, Patient and Coverage; "
                                 f"missing {', '.join(missing)}")
    return req


def subset(resource: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    """Keep the mandatory and the named top-level elements; tagged SUBSETTED."""
    return apply_elements(resource, elements)
