"""The Bulk Data operations declared once: system, Patient and Group $export, the Da Vinci ATR
$davinci-data-export (the same export runner), and the status and file endpoints of an export job.

The app assembly (gateway/app.py) collects them into the operation registry."""

from __future__ import annotations

from ..fhir.atr_model import OD
from ..operations import USER_SYSTEM, Endpoint, Need, Operation, Param, group_endpoint

SYSTEM_ONLY = frozenset({"system"})  # bulk submission: a Data Provider's backend client
TYPES = Param("types", "string", max="*", documentation="this gateway's own: comma-separated resource types the "
              "submission's files hold, so a token with write scopes on those types only may submit and ask for "
              "its status (default: all types, system/*.cu); each file is written under the token's scopes "
              "whatever it says")

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
    Operation(
        "bulk-submit", "bulk-submit", "Bulk Data bulk submission (4.0 ballot)",
        "[base]/$bulk-submit (POST Parameters): submitter, submissionId, manifestUrl (a Bulk Data manifest of "
        "NDJSON files the Data Provider hosts), replacesManifestUrl, submissionStatus in-progress | completed | "
        "stopped, fhirBaseUrl, oauthMetadataUrl (the gateway then gets a token as a Backend Services client of "
        "the provider for the manifest, and for files when the manifest says requiresAccessToken, sent only to "
        "files under fhirBaseUrl); the files are fetched through the egress policy (GATEWAY_BULK_SUBMIT_SOURCES) "
        "and loaded one transaction per file under the caller's rights; status at [base]/$bulk-submit-status",
        (Endpoint("system", "bulk.submit_handlers:bulk_submit", (), ("POST",)),), (Need("*", "cu"),),
        BULK + "bulk-submit",
        (Param("submitter", "Identifier", min=1), Param("submissionId", "string", min=1),
         Param("submissionStatus", "Coding"), Param("manifestUrl", "url"), Param("replacesManifestUrl", "url"),
         Param("fhirBaseUrl", "url"), Param("oauthMetadataUrl", "url", max="*"), TYPES),
        scope_levels=SYSTEM_ONLY, type_params=("types",), asynchronous=True, affects_state=True,
        tags=("bulk",)),
    Operation(
        "bulk-submit-status", "bulk-submit-status", "Status of a bulk submission",
        "[base]/$bulk-submit-status (POST Parameters or GET with submitter=system|value and submissionId) and "
        "[base]/$bulk-submit-status/[submission]: 202 while files load, then the status manifest with per-file "
        "output and error items; only the client (and user) that submitted (its token needs the write scopes of "
        "the submission: system/*.cu, or those of the types it names in types)",
        (Endpoint("system", "bulk.submit_handlers:bulk_submit_status", (), ("GET", "POST")),
         Endpoint("system", "bulk.submit_handlers:bulk_submit_status_of", (), ("GET",), suffix="/{job_id}")),
        (Need("*", "cu"),), BULK + "bulk-submit-status",
        (Param("submitter", "Identifier", min=1), Param("submissionId", "string", min=1), TYPES),
        scope_levels=SYSTEM_ONLY, type_params=("types",), tags=("bulk",)),
    Operation(
        "bulk-submit-outcome", "bulk-submit-outcome", "OperationOutcomes of one submitted manifest",
        "[base]/$bulk-submit-outcome/[job]: NDJSON OperationOutcomes of the files of one manifest that did not "
        "load; only the client that submitted",
        (Endpoint("system", "bulk.submit_handlers:bulk_submit_outcome", (), ("GET",), suffix="/{job_id}"),),
        (Need("*", "cu"),), parameters=(TYPES,), type_params=("types",), scope_levels=SYSTEM_ONLY, tags=("bulk",), part_of="bulk-submit"),
    Operation(
        "bulk-submit-data", "bulk-submit-data", "DEQM bulk submit data",
        "Measure/$bulk-submit-data (POST): data-collection measureReport(s) stored, and the data named by "
        "exportUrl loaded as a bulk submission: exportType dynamic (the default) runs the provider's Bulk Data "
        "$export at exportUrl (with _type, _since, _typeFilter) as a Backend Services client configured in "
        "GATEWAY_BULK_SUBMIT_CREDENTIALS (token endpoint from oauthMetadataUrl or [fhirBaseUrl]/.well-known/"
        "smart-configuration); static: exportUrl is the manifest of a finished export; status at the "
        "Content-Location URL ([base]/$bulk-submit-status/[submission])",
        (Endpoint("type", "bulk.submit_handlers:bulk_submit_data", ("Measure",), ("POST",)),),
        (Need("MeasureReport", "cu"), Need("*", "cu")),
        "http://hl7.org/fhir/us/davinci-deqm/OperationDefinition/bulk-submit-data",
        (Param("measureReport", "MeasureReport", min=1, max="*"), Param("exportType", "code"),
         Param("exportUrl", "url", min=1), Param("fhirBaseUrl", "url"), Param("oauthMetadataUrl", "url"),
         Param("_type", "string"), Param("_since", "instant"), Param("_typeFilter", "string", max="*")),
        scope_levels=SYSTEM_ONLY, asynchronous=True, affects_state=True, tags=("measure",)),
)
