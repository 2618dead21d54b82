"""DEQM $care-gaps declared once, with the status endpoint of its asynchronous runs.

The app assembly (gateway/app.py) collects it into the operation registry; the route, the access policy,
the CapabilityStatement entry and the OpenAPI text derive from it."""

from __future__ import annotations

from ...operations import USER_SYSTEM, Endpoint, Operation, Param
from ..parameters import DEQM, EVALUATE_NEEDS, MEASURE_CHOICE, PERIOD, measure_endpoints

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "care-gaps", "care-gaps", "DEQM gaps in care",
        "DEQM Measure/$care-gaps and Measure/[id]/$care-gaps, GET and POST: gaps-in-care document (or "
        "collection, isDocument=false) Bundles per patient; status open-gap | closed-gap | prospective-gap | "
        "not-applicable; subject Patient/Group, subjectGroup, practitioner, organization(Resource); measures by "
        "measureId, measureUrl, measureIdentifier, measure, measureResource, manifest, topic; Prefer: "
        "respond-async runs it as a job (status at Measure/$care-gaps-status/[job])",
        measure_endpoints("deqm.care_gaps.handler", "care_gaps_type", "care_gaps_instance"), EVALUATE_NEEDS,
        DEQM + "care-gaps",
        (*PERIOD, *MEASURE_CHOICE, Param("topic", "string", max="*"), Param("manifest", "canonical"),
         Param("subject", "string", documentation="Patient/[id] or Group/[id]; under patient/ scopes "
               "Patient/P only"),
         Param("subjectGroup", "Group"), Param("practitioner", "string"), Param("organization", "string"),
         Param("organizationResource", "Organization"), Param("status", "code", min=1, max="*"),
         Param("isDocument", "boolean"), Param("return", "Bundle", use="out", max="*")),
        patient=True, subject_param="subject", asynchronous=True, tags=("measure",)),
    Operation(
        "care-gaps-status", "care-gaps-status", "Status and output of an asynchronous $care-gaps",
        "Measure/$care-gaps-status/[job] (GET: 202 while running, 200 manifest; DELETE removes the job) and "
        "Measure/$care-gaps-status/[job]/output (NDJSON gaps Bundles)",
        (Endpoint("type", "deqm.care_gaps.handler:care_gaps_status", ("Measure",), ("GET",), suffix="/{job_id}"),
         Endpoint("type", "deqm.care_gaps.handler:care_gaps_delete", ("Measure",), ("DELETE",), suffix="/{job_id}"),
         Endpoint("type", "deqm.care_gaps.handler:care_gaps_output", ("Measure",), ("GET",),
                  suffix="/{job_id}/output")),
        EVALUATE_NEEDS, scope_levels=USER_SYSTEM, tags=("measure",), part_of="care-gaps"),
)
