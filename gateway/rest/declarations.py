"""The RESTful API's [type]/$validate and the job listing [base]/$jobs, declared once (the interactions themselves are
the routes of instance.py, type_level.py and system.py).

The app assembly (gateway/app.py) collects it into the operation registry."""

from __future__ import annotations

from ..operations import ANY_TYPE, JOBS_ALL_SCOPE, PATH_TYPE, USER_SYSTEM, Endpoint, Need, Operation, Param

OPERATIONS: tuple[Operation, ...] = (
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
        "jobs", "jobs", "The caller's asynchronous jobs and their status",
        "[base]/$jobs (GET, gateway-specific): Bulk exports, asynchronous $care-gaps and bulk submissions, newest "
        "first, with kind, status, times and (for exports) the status URL: those the caller started (the same "
        "client and user, or the same signed-in user through another app); every job with the scope "
        + JOBS_ALL_SCOPE + ". No output is listed: files stay behind the status endpoints",
        (Endpoint("system", "rest.jobs_list:jobs", (), ("GET",)),), (),
        "http://fhir-vbc-gateway.example.org/OperationDefinition/jobs",
        (Param("_count", "integer", documentation="how many jobs (1-200, default 50)"),
         Param("total", "integer", use="out", min=1), Param("job", "", use="out", max="*")),
        scope_levels=USER_SYSTEM, tags=("bulk",)),
)
