"""The Bulk Data operations declared once: system, Patient and Group $export, the Da Vinci ATR
$davinci-data-export (the same export runner), and the status and file endpoints of an export job.

The app assembly (gateway/app.py) collects them into the operation registry."""

from __future__ import annotations

from ..fhir.atr_model import OD
from ..operations import USER_SYSTEM, Endpoint, Need, Operation, Param, group_endpoint

BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
GET_POST = ("GET", "POST")
EXPORT_PARAMS = (
    Param("_outputFormat", "string"), Param("_since", "instant"), Param("_until", "instant"),
    Param("_type", "string", max="*", documentation="comma-separated resource types"),
    Param("_elements", "string", max="*"), Param("_typeFilter", "string", max="*"),
    Param("patient", "Reference", max="*", documentation="POST only: narrows the export to these patients"))
TYPE_PARAMS = ("_type", "resourceTypes")  # the bulk kick-off reads both (resourceTypes: the ATR IG's examples)
EXPORT_DOC = ("Prefer: respond-async; status at [base]/$export-status/[job] (202 + X-Progress, 200 manifest, "
              "DELETE cancels), NDJSON files at [base]/$export-file/[job]/[file]")



OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "export", "export", "Bulk Data system-level export", "Bulk Data [base]/$export, GET and POST, "
        + EXPORT_DOC + "; _outputFormat, _type, _since, _until, _elements, _typeFilter",
        (Endpoint("system", "bulk.handlers:export_system"),), (Need("*", "rs"),), BULK + "export",
        EXPORT_PARAMS, scope_levels=USER_SYSTEM, type_params=TYPE_PARAMS, asynchronous=True, tags=("bulk",)),
    Operation(
        "patient-export", "export", "Bulk Data export of all patients",
        "Patient/$export: every Patient's compartment plus referenced Practitioner, PractitionerRole, "
        "Organization and Location; patient (POST) narrows it; " + EXPORT_DOC,
        (Endpoint("type", "bulk.handlers:export_patients", ("Patient",)),), (Need("*", "rs"),),
        BULK + "patient-export", EXPORT_PARAMS, scope_levels=USER_SYSTEM, type_params=TYPE_PARAMS,
        asynchronous=True, tags=("bulk",)),
    Operation(
        "group-export", "export", "Bulk Data export of a group's members",
        "Group/[id]/$export: the Group, its members' Patient compartments and the referenced Practitioner, "
        "PractitionerRole, Organization and Location; " + EXPORT_DOC,
        (Endpoint("instance", "bulk.handlers:export_group", ("Group",), id_param="group_id"),),
        (Need("*", "rs"),), BULK + "group-export", EXPORT_PARAMS, scope_levels=USER_SYSTEM,
        type_params=TYPE_PARAMS, asynchronous=True, tags=("bulk",)),
    Operation(
        "davinci-data-export", "davinci-data-export", "Da Vinci ATR member list export",
        "Da Vinci ATR Group/[id]/$davinci-data-export: exportType hl7.fhir.us.davinci-atr (_type defaults to the "
        "eight ATR types and must include Group, Patient and Coverage) or the PDex Provider Access types "
        "hl7.fhir.us.davinci-pdex#provider-download, #provider-snapshot and #provider-delta (with _since): every "
        "type of the members' data unless _type narrows it; on those and on $provider-member-match Groups, members "
        "who opted out are left out when the job runs, and the manifest's error list says how many",
        group_endpoint("bulk.handlers", "davinci_data_export", GET_POST), (Need("Group", "r"), Need("*", "rs")),
        OD + "davinci-data-export", (Param("exportType", "string", min=1), *EXPORT_PARAMS),
        scope_levels=USER_SYSTEM, type_params=TYPE_PARAMS, asynchronous=True, tags=("atr",)),
    Operation(
        "export-status", "export-status", "Export job status, manifest and cancel",
        "[base]/$export-status/[job]: 202 + X-Progress while running, 200 with the manifest when done, DELETE "
        "cancels; only the client and user that started the job, and its manifest only while their grant still "
        "reads every type the job exported (the kick-off's scopes, not a wildcard)",
        (Endpoint("system", "bulk.handlers:export_status", (), ("GET",), suffix="/{job_id}"),
         Endpoint("system", "bulk.handlers:export_cancel", (), ("DELETE",), suffix="/{job_id}")),
        (), scope_levels=USER_SYSTEM, tags=("bulk",), part_of="export"),
    Operation(
        "export-file", "export-file", "One NDJSON file of a finished export",
        "[base]/$export-file/[job]/[file]: one NDJSON output file; only the client and user that started the job, "
        "while their grant still reads every type the job exported",
        (Endpoint("system", "bulk.handlers:export_file", (), ("GET",), suffix="/{job_id}/{name}"),),
        (), scope_levels=USER_SYSTEM, tags=("bulk",), part_of="export"),
)
