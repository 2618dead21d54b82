"""[type]/$validate (FHIR R4 Resource-validate), POST: the resource (the body, or the `resource` parameter of a
Parameters body) is checked as a write would check it — R4 model and, for a claimed DEQM profile, the
profile's rules — and the answer is an OperationOutcome listing every issue; nothing is stored."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Settings
from ..api.http import check_accept, fhir_response, pretty, read_json_body
from ..fhir.errors import BadRequest, operation_outcome
from ..fhir.parameters import parameter_list
from ..fhir.validation import validate_resource
from ..resources.rest import check_type


async def validate(rtype: str, request: Request, settings: Settings) -> Response:
    check_accept(request)
    check_type(rtype)
    body: Any = await read_json_body(request, settings.max_body_bytes)
    if isinstance(body, dict) and body.get("resourceType") == "Parameters" and rtype != "Parameters":
        found = [p.get("resource") for p in parameter_list(body, "$validate") if p["name"] == "resource"]
        if len(found) != 1:
            raise BadRequest("$validate takes one 'resource' parameter")
        body = found[0]
    if not isinstance(body, dict) or body.get("resourceType") != rtype:
        raise BadRequest(f"$validate on {rtype} takes a {rtype} resource")
    result = validate_resource(body, "strict")
    if rtype == "Subscription":  # the same topic, endpoint, header and access rules as a write
        from ..auth.subscription_access import subscription_issues

        rest = request.app.state.rest
        result.errors.extend(await run_in_threadpool(
            subscription_issues, body, rest.subscription_endpoints, rest, "strict"))
    issues = result.errors + result.warnings
    outcome = operation_outcome(issues) if issues else {"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "diagnostics": "No issues found"}]}
    return fhir_response(outcome, is_pretty=pretty(request))
