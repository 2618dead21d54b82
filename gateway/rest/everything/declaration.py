"""Patient/$everything (R4 patient-everything) declared once, at instance and type level.

The app assembly (gateway/app.py) collects it into the operation registry; the routes, the access policy,
the CapabilityStatement entry and the OpenAPI text derive from it."""

from __future__ import annotations

from ...operations import Endpoint, Need, Operation, Param
from .service import REFERENCED

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "patient-everything", "everything", "Everything in a patient's record",
        "Patient/[id]/$everything and Patient/$everything (every patient the caller may see), GET and POST: a "
        "searchset Bundle of the Patient, the resources of its R4 Patient compartment (Group only when _type "
        f"names it) and the {', '.join(REFERENCED)} resources they reference; start/end filter by care date, "
        "_since by lastUpdated, _type limits the types; paged by _count with next links. Every read is under "
        "the caller's grant: types without rs scopes are left out (named in an OperationOutcome entry), "
        "patient/ tokens reach their own record only, attribution-restricted callers their attributed patients",
        (Endpoint("instance", "rest.everything.handler:everything_instance", ("Patient",), id_param="pid"),
         Endpoint("type", "rest.everything.handler:everything_type", ("Patient",))),
        (Need("Patient", "rs"),), "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        (Param("start", "date", documentation="care dates on or after this date"),
         Param("end", "date", documentation="care dates on or before this date"),
         Param("_since", "instant", documentation="resources updated at or after this instant"),
         Param("_type", "code", max="*", documentation="comma-separated resource types to return"),
         Param("_count", "integer", documentation="entries per page"),
         Param("return", "Bundle", use="out", min=1)),
        patient=True, tags=("read",)),
)
