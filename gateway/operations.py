"""The operation registry: every FHIR operation the gateway serves, declared once.

Each ``Operation`` names its ``$code``, the levels it answers at (system, type, instance, with the resource
types at each), its HTTP methods and handlers, its parameters, the scopes it needs, how patient/ scopes are
confined, whether it runs asynchronously, its OperationDefinition canonical and its documentation. Everything
else is derived from this table:

- the FastAPI routes (``gateway/api/routes.py`` builds them from the endpoints below; an
  operation route registered any other way has no policy and is closed by the auth middleware);
- the authorization policy (``gateway/auth/policy.py``: ``OPERATIONS`` and the per-route lookup);
- the CapabilityStatement's operation lists (``gateway/rest/capability.py``: system-level operations
  under ``rest.operation``, type and instance-level ones under ``rest.resource[].operation``);
- the OpenAPI summaries and descriptions;
- the route-enumeration and adversarial tests (``tests/security/test_registry_*.py``).

This module is plain data (no FastAPI, no store): the auth kernel imports it. Handlers are named as
``"module:function"`` strings relative to ``gateway``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Level = Literal["system", "type", "instance"]
SCOPE_LEVELS: frozenset[str] = frozenset({"patient", "user", "system"})
USER_SYSTEM: frozenset[str] = frozenset({"user", "system"})
ANY_TYPE = "*"  # in Endpoint.types: every resource type (the path takes a {rtype} parameter)
PATH_TYPE = "{type}"  # in a Need: the resource type the operation's path names


@dataclass(frozen=True)
class Need:
    """One (resource type, permission letters) pair a request needs; ``rtype`` "*" means every type."""
    rtype: str
    letters: str


@dataclass(frozen=True)
class Param:
    """One OperationDefinition parameter as the gateway implements it."""
    name: str
    type: str
    use: Literal["in", "out"] = "in"
    min: int = 0
    max: str = "1"
    documentation: str = ""


@dataclass(frozen=True)
class Endpoint:
    """One HTTP binding of an operation: its level, the resource types there, methods and handler."""
    level: Level
    handler: str  # "module:function" under gateway
    types: tuple[str, ...] = ()  # () at system level; ("*",) for every type
    methods: tuple[str, ...] = ("GET", "POST")
    id_param: str = "rid"  # the handler's parameter that receives the instance id
    suffix: str = ""  # path after the $code segment, e.g. "/{job_id}"

    def path(self, code: str, rtype: str | None = None) -> str:
        """The route template relative to the FHIR base; ``rtype`` defaults to the endpoint's one type
        (or the ``{rtype}`` parameter for every type)."""
        if self.level == "system":
            return f"/${code}{self.suffix}"
        t = rtype or (self.types[0] if len(self.types) == 1 and self.types[0] != ANY_TYPE else "{rtype}")
        if self.level == "type":
            return f"/{t}/${code}{self.suffix}"
        return f"/{t}/{{{self.id_param}}}/${code}{self.suffix}"

    def paths(self, code: str) -> list[str]:
        """Every route template of this endpoint (one per named type, or one with ``{rtype}``)."""
        if self.level == "system" or ANY_TYPE in self.types:
            return [self.path(code)]
        return [self.path(code, t) for t in self.types]

    def serves(self, rtype: str) -> bool:
        """True when this endpoint answers for resource type ``rtype`` (type and instance levels)."""
        return ANY_TYPE in self.types or rtype in self.types


@dataclass(frozen=True)
class Operation:
    """One operation, declared once; see the module docstring for what is derived from it."""
    key: str  # unique in the registry
    code: str  # the $code in URLs
    summary: str
    documentation: str
    endpoints: tuple[Endpoint, ...]
    needs: tuple[Need, ...]
    canonical: str | None = None  # OperationDefinition; None for endpoints the CapabilityStatement omits
    parameters: tuple[Param, ...] = ()
    scope_levels: frozenset[str] = SCOPE_LEVELS  # scope levels (patient/user/system) that may call it
    patient: bool = False  # usable under patient/ scopes; output confined to the launch patient
    subject_param: str | None = None  # under patient/ scopes: required and must name Patient/<P>
    type_params: tuple[str, ...] = ()  # parameters listing types that replace "*" in needs (_type), query or body
    asynchronous: bool = False  # answers 202 and a status URL (always, or with Prefer: respond-async)
    tags: tuple[str, ...] = ()
    extension: tuple[dict[str, str], ...] = ()
    affects_state: bool = False
    part_of: str | None = None  # for endpoints without a canonical: the key of the operation they serve

    @property
    def levels(self) -> frozenset[str]:
        """The levels (system/type/instance) this operation answers at."""
        return frozenset(e.level for e in self.endpoints)

    def types_at(self, level: Level) -> frozenset[str]:
        """Resource types this operation serves at a type or instance level ("*" for all)."""
        return frozenset(t for e in self.endpoints if e.level == level for t in e.types)

    def capability_entry(self) -> dict[str, object]:
        """The CapabilityStatement ``operation`` element for this operation."""
        out: dict[str, object] = {"name": self.code, "definition": self.canonical,
                                  "documentation": self.documentation}
        if self.extension:
            out["extension"] = [dict(e) for e in self.extension]
        return out

    def description(self) -> str:
        """OpenAPI description: the documentation and the declared parameters."""
        lines = [self.documentation]
        if self.canonical:
            lines.append(f"\n\nOperationDefinition: {self.canonical}")
        ins = [p for p in self.parameters if p.use == "in"]
        outs = [p for p in self.parameters if p.use == "out"]
        for title, group in (("Input parameters", ins), ("Output parameters", outs)):
            if group:
                lines.append(f"\n\n{title}:\n")
                lines += [f"\n- `{p.name}` ({p.type}, {p.min}..{p.max}){': ' + p.documentation if p.documentation else ''}"
                          for p in group]
        return "".join(lines)


_MEASURE_READ = (Need("Measure", "r"), Need("Library", "r"))
_EVALUATE_NEEDS = (*_MEASURE_READ, Need("*", "s"))  # the data a measure reads is only known while it runs
_GET_POST = ("GET", "POST")
_PERIOD = (Param("periodStart", "date", min=1, documentation="start of the measurement period"),
           Param("periodEnd", "date", min=1, documentation="end of the measurement period"))
_MEASURE_CHOICE = (
    Param("measureId", "id", max="*"), Param("measureUrl", "canonical", max="*"),
    Param("measureIdentifier", "string", max="*"), Param("measure", "string", max="*"),
    Param("measureResource", "Resource", max="*", documentation="an inline Measure"))
_SUBJECTS = (
    Param("subject", "string", documentation="Patient/[id] or Group/[id]; under patient/ scopes Patient/P only"),
    Param("practitioner", "string", documentation="the patients whose generalPractitioner it is"))


def _measure_endpoints(module: str, type_fn: str, instance_fn: str, methods: tuple[str, ...] = _GET_POST
                       ) -> tuple[Endpoint, ...]:
    return (Endpoint("type", f"{module}:{type_fn}", ("Measure",), methods),
            Endpoint("instance", f"{module}:{instance_fn}", ("Measure",), methods, "measure_id"))


def _group_endpoint(module: str, fn: str, methods: tuple[str, ...] = ("POST",)) -> tuple[Endpoint, ...]:
    return (Endpoint("instance", f"{module}:{fn}", ("Group",), methods, "group_id"),)


_ATR = "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/"
_DEQM = "http://hl7.org/fhir/us/davinci-deqm/OperationDefinition/"
_BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
_EXPORT_PARAMS = (
    Param("_outputFormat", "string"), Param("_since", "instant"), Param("_until", "instant"),
    Param("_type", "string", max="*", documentation="comma-separated resource types"),
    Param("_elements", "string", max="*"), Param("_typeFilter", "string", max="*"),
    Param("patient", "Reference", max="*", documentation="POST only: narrows the export to these patients"))
_TYPE_PARAMS = ("_type", "resourceTypes")  # the bulk kick-off reads both (resourceTypes: the ATR IG's examples)
_EXPORT_DOC = ("Prefer: respond-async; status at [base]/$export-status/[job] (202 + X-Progress, 200 manifest, "
               "DELETE cancels), NDJSON files at [base]/$export-file/[job]/[file]")

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "evaluate-measure", "evaluate-measure", "Evaluate a measure",
        "Measure/$evaluate-measure and Measure/[id]/$evaluate-measure, GET and POST; reportType subject | "
        "subject-list | population; subject Patient/[id] or Group/[id] (active members)",
        _measure_endpoints("deqm.evaluate_measure.handler", "evaluate_type", "evaluate_instance"), _EVALUATE_NEEDS,
        "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
        (*_PERIOD, Param("measure", "string"), Param("reportType", "code"), *_SUBJECTS,
         Param("lastReceivedOn", "dateTime"), Param("reporter", "string"),
         Param("return", "MeasureReport", use="out", min=1)),
        patient=True, subject_param="subject", tags=("measure",)),
    Operation(
        "evaluate", "evaluate", "DEQM $evaluate: several measures",
        "DEQM Measure/$evaluate: measureId, measureUrl, measureIdentifier, measure (repeatable), "
        "measureResource; returns Parameters of Bundles (MeasureReport + data of interest)",
        _measure_endpoints("deqm.evaluate.handler", "evaluate_type", "evaluate_instance"), _EVALUATE_NEEDS,
        _DEQM + "evaluate",
        (*_PERIOD, *_MEASURE_CHOICE, Param("reportType", "code"), *_SUBJECTS, Param("lastReceivedOn", "dateTime"),
         Param("reporter", "string"), Param("return", "Bundle", use="out", max="*")),
        patient=True, subject_param="subject", tags=("measure",)),
    Operation(
        "care-gaps", "care-gaps", "DEQM gaps in care",
        "DEQM Measure/$care-gaps and Measure/[id]/$care-gaps, GET and POST: gaps-in-care document (or "
        "collection, isDocument=false) Bundles per patient; status open-gap | closed-gap | prospective-gap | "
        "not-applicable; subject Patient/Group, subjectGroup, practitioner, organization(Resource); measures by "
        "measureId, measureUrl, measureIdentifier, measure, measureResource, manifest, topic; Prefer: "
        "respond-async runs it as a job (status at Measure/$care-gaps-status/[job])",
        _measure_endpoints("deqm.care_gaps.handler", "care_gaps_type", "care_gaps_instance"), _EVALUATE_NEEDS,
        _DEQM + "care-gaps",
        (*_PERIOD, *_MEASURE_CHOICE, Param("topic", "string", max="*"), Param("manifest", "canonical"),
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
        _EVALUATE_NEEDS, scope_levels=USER_SYSTEM, tags=("measure",), part_of="care-gaps"),
    Operation(
        "data-requirements", "data-requirements", "Data requirements of a measure",
        "Measure/[id]/$data-requirements (and Measure/$data-requirements?measure=), GET and POST: "
        "module-definition Library derived from the measure's ELM (types, profiles, value set and code "
        "filters, date filters, mustSupport)",
        _measure_endpoints("deqm.data_requirements.handler", "data_requirements_type", "data_requirements_instance"),
        _MEASURE_READ, "http://hl7.org/fhir/OperationDefinition/Measure-data-requirements",
        (Param("periodStart", "date"), Param("periodEnd", "date"), Param("measure", "string"),
         Param("return", "Library", use="out", min=1)),
        patient=True, tags=("measure",)),
    Operation(
        "submit-data", "submit-data", "DEQM submit data",
        "Measure/$submit-data and Measure/[id]/$submit-data (POST; alias Measure/$deqm-submit-data): DEQM "
        "'bundle' parameters or the R4 measureReport + resource form; data-collection MeasureReport with "
        "submitDataUpdateType incremental or snapshot; stored atomically with a Provenance (X-Provenance "
        "honoured)",
        _measure_endpoints("deqm.submit_data.handler", "submit_type", "submit_instance", ("POST",)),
        (Need("MeasureReport", "c"), Need("*", "cu")),
        "http://hl7.org/fhir/OperationDefinition/Measure-submit-data",
        (Param("bundle", "Bundle", max="*"), Param("measureReport", "MeasureReport"),
         Param("resource", "Resource", max="*")),
        scope_levels=USER_SYSTEM, tags=("measure",), affects_state=True,
        extension=tuple({"url": "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/"
                                "extension-submitDataUpdateType", "valueCode": code}
                        for code in ("incremental", "snapshot"))),
    Operation(
        "deqm-submit-data", "deqm-submit-data", "DEQM submit data (alias of $submit-data)",
        "Measure/$deqm-submit-data: the DEQM form of $submit-data under its older name",
        (Endpoint("type", "deqm.submit_data.handler:submit_type", ("Measure",), ("POST",)),),
        (Need("MeasureReport", "c"), Need("*", "cu")), scope_levels=USER_SYSTEM, tags=("measure",),
        affects_state=True, part_of="submit-data"),
    Operation(
        "collect-data", "collect-data", "DEQM collect data",
        "Measure/$collect-data and Measure/[id]/$collect-data, GET and POST: per measure and patient a "
        "collection Bundle with a Data Exchange MeasureReport (reporter = organization) and the data the "
        "measure's retrieves select; subject Patient/Group, subjectGroup, practitioner or the whole "
        "population; lastReceivedOn for incremental pulls",
        _measure_endpoints("deqm.collect_data.handler", "collect_type", "collect_instance"), _EVALUATE_NEEDS,
        _DEQM + "collect-data",
        (*_PERIOD, *_MEASURE_CHOICE, *_SUBJECTS, Param("subjectGroup", "Group"),
         Param("organization", "string"), Param("organizationResource", "Organization"),
         Param("lastReceivedOn", "dateTime"), Param("return", "Bundle", use="out", max="*")),
        patient=True, subject_param="subject", tags=("measure",)),
    Operation(
        "validate", "validate", "Validate a resource without storing it",
        "[type]/$validate (POST): R4 model checks plus the rules of any DEQM profile the resource claims, "
        "reported as an OperationOutcome; nothing is stored",
        (Endpoint("type", "rest.validate:validate", (ANY_TYPE,), ("POST",)),),
        (Need(PATH_TYPE, "c"),),  # reads and writes nothing, but answers as a create of that type would
        "http://hl7.org/fhir/OperationDefinition/Resource-validate",
        (Param("resource", "Resource", min=1), Param("return", "OperationOutcome", use="out", min=1)),
        patient=True, tags=("write",)),
    Operation(
        "ingest", "ingest", "Ingest one internal-format file through its mapping",
        "$ingest/{format} (POST, gateway-specific): one internal-format file (cclf, claims-csv, x12-837, "
        "synthea-csv, hl7v2) as the body, mapped to FHIR through mappings/{format}.inbound.yaml and written "
        "idempotently; answers an OperationOutcome with the summary and per-record rejects "
        "(docs/guides/mappings.md)",
        (Endpoint("system", "ingest.handler:ingest", (), ("POST",), suffix="/{fmt}"),),
        (Need("*", "cu"),), "http://fhir-vbc-gateway.example.org/OperationDefinition/ingest",
        (Param("filename", "string", documentation="the file name the mapping expects"),
         Param("return", "OperationOutcome", use="out", min=1)),
        scope_levels=frozenset({"system"}), tags=("ingest",), affects_state=True),
    Operation(
        "export", "export", "Bulk Data system-level export", "Bulk Data [base]/$export, GET and POST, "
        + _EXPORT_DOC + "; _outputFormat, _type, _since, _until, _elements, _typeFilter",
        (Endpoint("system", "bulk.handlers:export_system"),), (Need("*", "rs"),), _BULK + "export",
        _EXPORT_PARAMS, scope_levels=USER_SYSTEM, type_params=_TYPE_PARAMS, asynchronous=True, tags=("bulk",)),
    Operation(
        "patient-export", "export", "Bulk Data export of all patients",
        "Patient/$export: every Patient's compartment plus referenced Practitioner, PractitionerRole, "
        "Organization and Location; patient (POST) narrows it; " + _EXPORT_DOC,
        (Endpoint("type", "bulk.handlers:export_patients", ("Patient",)),), (Need("*", "rs"),),
        _BULK + "patient-export", _EXPORT_PARAMS, scope_levels=USER_SYSTEM, type_params=_TYPE_PARAMS,
        asynchronous=True, tags=("bulk",)),
    Operation(
        "group-export", "export", "Bulk Data export of a group's members",
        "Group/[id]/$export: the Group, its members' Patient compartments and the referenced Practitioner, "
        "PractitionerRole, Organization and Location; " + _EXPORT_DOC,
        (Endpoint("instance", "bulk.handlers:export_group", ("Group",), id_param="group_id"),),
        (Need("*", "rs"),), _BULK + "group-export", _EXPORT_PARAMS, scope_levels=USER_SYSTEM,
        type_params=_TYPE_PARAMS, asynchronous=True, tags=("bulk",)),
    Operation(
        "davinci-data-export", "davinci-data-export", "Da Vinci ATR member list export",
        "Da Vinci ATR Group/[id]/$davinci-data-export: exportType hl7.fhir.us.davinci-atr; _type defaults to the "
        "eight ATR types and must include Group, Patient and Coverage",
        _group_endpoint("bulk.handlers", "davinci_data_export", _GET_POST), (Need("Group", "r"), Need("*", "rs")),
        _ATR + "davinci-data-export", (Param("exportType", "string", min=1), *_EXPORT_PARAMS),
        scope_levels=USER_SYSTEM, type_params=_TYPE_PARAMS, asynchronous=True, tags=("atr",)),
    Operation(
        "export-status", "export-status", "Export job status, manifest and cancel",
        "[base]/$export-status/[job]: 202 + X-Progress while running, 200 with the manifest when done, DELETE "
        "cancels; only the client that started the job",
        (Endpoint("system", "bulk.handlers:export_status", (), ("GET",), suffix="/{job_id}"),
         Endpoint("system", "bulk.handlers:export_cancel", (), ("DELETE",), suffix="/{job_id}")),
        (Need("*", "r"),), scope_levels=USER_SYSTEM, tags=("bulk",), part_of="export"),
    Operation(
        "export-file", "export-file", "One NDJSON file of a finished export",
        "[base]/$export-file/[job]/[file]: one NDJSON output file; only the client that started the job",
        (Endpoint("system", "bulk.handlers:export_file", (), ("GET",), suffix="/{job_id}/{name}"),),
        (Need("*", "r"),), scope_levels=USER_SYSTEM, tags=("bulk",), part_of="export"),
    Operation(
        "member-add", "member-add", "ATR: add a member attribution",
        "ATR Group/[id]/$member-add: memberId + providerNpi or patientReference + providerReference, optional "
        "attributionPeriod; draft and open lists only; each change is a new Group version",
        _group_endpoint("atr.handlers", "member_add"), (Need("Group", "u"),), _ATR + "member-add",
        (Param("memberId", "Identifier"), Param("providerNpi", "Identifier"),
         Param("patientReference", "Reference"), Param("providerReference", "Reference"),
         Param("attributionPeriod", "Period")),
        scope_levels=USER_SYSTEM, tags=("atr",), affects_state=True),
    Operation(
        "member-remove", "member-remove", "ATR: remove member attributions",
        "ATR Group/[id]/$member-remove: memberId [+ providerNpi] or patientReference [+ providerReference [+ "
        "coverageReference]]; draft keeps the member inactive with changeType dropped, open deletes it, final "
        "refuses",
        _group_endpoint("atr.handlers", "member_remove"), (Need("Group", "u"),), _ATR + "member-remove",
        (Param("memberId", "Identifier"), Param("providerNpi", "Identifier"),
         Param("patientReference", "Reference"), Param("providerReference", "Reference"),
         Param("coverageReference", "Reference")),
        scope_levels=USER_SYSTEM, tags=("atr",), affects_state=True),
    Operation(
        "confirm-attribution-list", "confirm-attribution-list", "ATR: confirm the list",
        "ATR Group/[id]/$confirm-attribution-list: the list becomes final (inactive members dropped); answers 201",
        _group_endpoint("atr.handlers", "confirm_list"), (Need("Group", "u"),), _ATR + "confirm-attribution-list",
        scope_levels=USER_SYSTEM, tags=("atr",), affects_state=True),
    Operation(
        "attribution-status", "attribution-status", "ATR: one member's attribution data",
        "ATR Group/[id]/$attribution-status: memberId or patientReference; a Bundle of the member's Patient, "
        "Coverage and attributed providers",
        _group_endpoint("atr.handlers", "attribution_status"),
        (Need("Group", "r"), Need("Patient", "r"), Need("Coverage", "r")), _ATR + "attribution-status",
        (Param("memberId", "Identifier"), Param("patientReference", "Reference"),
         Param("return", "Bundle", use="out", min=1)),
        scope_levels=USER_SYSTEM, tags=("atr",)),
)


@dataclass(frozen=True)
class Route:
    """One (method, template relative to the FHIR base) the registry declares, with its operation."""
    method: str
    path: str
    operation: Operation
    endpoint: Endpoint


@dataclass
class Registry:
    """Lookups over ``OPERATIONS``, checked for consistency when built."""
    operations: tuple[Operation, ...]
    by_key: dict[str, Operation] = field(default_factory=dict)
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for op in self.operations:
            if op.key in self.by_key:
                raise ValueError(f"operation {op.key} is declared twice")
            self.by_key[op.key] = op
            if not op.endpoints:
                raise ValueError(f"operation {op.key} declares no endpoint")
            if op.patient != ("patient" in op.scope_levels):
                raise ValueError(f"operation {op.key}: 'patient' and the patient scope level disagree")
            for e in op.endpoints:
                if (e.level == "system") != (not e.types):
                    raise ValueError(f"${op.code}: a system-level endpoint names no types, the others do")
                for path in e.paths(op.code):
                    for m in e.methods:
                        if (m, path) in self.routes:
                            raise ValueError(f"{m} {path} is declared twice")
                        self.routes[(m, path)] = Route(m, path, op, e)

        for op in self.operations:
            parent = self.by_key.get(op.part_of or "")
            if op.canonical is None and (parent is None or parent.canonical is None):
                raise ValueError(f"operation {op.key} has no canonical and is part of no declared operation")

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def route(self, method: str, path: str) -> Route | None:
        """The declared route for (method, template relative to the FHIR base), or None."""
        return self.routes.get((method, path))

    def claimed(self, op: Operation) -> Operation:
        """The operation the CapabilityStatement lists for ``op`` (itself, or the one it is part of)."""
        return op if op.canonical else self.by_key[op.part_of or ""]

    def system_operations(self) -> list[Operation]:
        """Operations the CapabilityStatement lists under ``rest.operation``."""
        return [op for op in self.operations if op.canonical and "system" in op.levels]

    def resource_operations(self, rtype: str) -> list[Operation]:
        """Operations the CapabilityStatement lists under the ``rest.resource`` entry of ``rtype``."""
        return [op for op in self.operations if op.canonical and any(
            e.level in ("type", "instance") and e.serves(rtype) for e in op.endpoints)]


REGISTRY = Registry(OPERATIONS)
