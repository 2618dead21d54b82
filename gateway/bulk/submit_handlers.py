"""Bulk submission over HTTP: ``[base]/$bulk-submit`` (Bulk Data 4.0 ballot), ``Measure/$bulk-submit-data``
(DEQM), the submission status (``[base]/$bulk-submit-status``, by submitter and submissionId or by the status
URL) and the OperationOutcomes of a manifest (``[base]/$bulk-submit-outcome/[job]``)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Rest, Settings
from ..api.http import fhir_response, read_json_body
from ..api.identity import request_client_id, request_subject
from ..fhir.errors import BadRequest, info_outcome
from ..fhir.parameters import parameter_list
from .submit import EVENT_STATUS, SubmitService, submission_key

NDJSON = "application/fhir+ndjson"
URL_KEYS = ("valueUrl", "valueUri", "valueString")


def _svc(request: Request) -> SubmitService:
    svc: SubmitService = request.app.state.bulk_submit
    return svc


def _params(body: Any, op: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in parameter_list(body, f"POST ${op}"):
        out.setdefault(str(p.get("name")), []).append(p)
    return out


def _one(params: dict[str, list[dict[str, Any]]], name: str, keys: tuple[str, ...], required: bool = False) -> Any:
    found = params.get(name) or []
    if len(found) > 1:
        raise BadRequest(f"Parameter {name} may appear only once")
    if not found:
        if required:
            raise BadRequest(f"Parameter {name} is required")
        return None
    value = next((found[0][k] for k in keys if k in found[0]), None)
    if value is None:
        raise BadRequest(f"Parameter {name} must be a {' or '.join(k.removeprefix('value') for k in keys)}")
    return value


def _submitter(params: dict[str, list[dict[str, Any]]]) -> tuple[str, str]:
    ident = _one(params, "submitter", ("valueIdentifier",), required=True)
    sid = _one(params, "submissionId", ("valueString",), required=True)
    if not isinstance(ident, dict) or not ident.get("value"):
        raise BadRequest("submitter must be an Identifier with a value (and its system)")
    if not isinstance(sid, str) or not sid.strip():
        raise BadRequest("submissionId must be a non-empty string")
    return f"{ident.get('system', '')}|{ident['value']}", sid


def _accepted(svc: SubmitService, key: str, what: str) -> Response:
    url = svc.status_url(key)
    return fhir_response(info_outcome(f"{what} accepted; poll {url}"), 202, {"Content-Location": url})


async def bulk_submit(request: Request, settings: Settings) -> Response:
    """``$bulk-submit``: announce a manifest, replace one, complete or stop (abort) the submission."""
    params = _params(await read_json_body(request, settings.max_body_bytes), "bulk-submit")
    submitter, sid = _submitter(params)
    coding = _one(params, "submissionStatus", ("valueCoding",))
    status = None
    if coding is not None:
        if not isinstance(coding, dict) or coding.get("system", EVENT_STATUS) != EVENT_STATUS:
            raise BadRequest(f"submissionStatus must be a Coding of {EVENT_STATUS}")
        status = coding.get("code")
    manifest = _one(params, "manifestUrl", URL_KEYS)
    replaces = _one(params, "replacesManifestUrl", URL_KEYS)
    svc = _svc(request)
    key = await run_in_threadpool(svc.submit, request_client_id(request), request_subject(request), submitter, sid,
                                  status, manifest, replaces, str(request.url))
    return _accepted(svc, key, "Submission request")


async def bulk_submit_data(request: Request, settings: Settings, rest: Rest) -> Response:
    """DEQM ``Measure/$bulk-submit-data``: data-collection MeasureReport(s) and the manifest of the data
    (``exportType`` static); the reports are stored, the data loaded as a one-manifest submission."""
    params = _params(await read_json_body(request, settings.max_body_bytes), "bulk-submit-data")
    reports: list[dict[str, Any]] = [p["resource"] for p in params.get("measureReport") or []
                                     if isinstance(p.get("resource"), dict)]
    if not reports or len(reports) != len(params.get("measureReport") or []) or not all(
            r.get("resourceType") == "MeasureReport" for r in reports):
        raise BadRequest("measureReport (one or more MeasureReport resources) is required")
    export_type = _one(params, "exportType", ("valueCode", "valueString")) or "dynamic"
    url = _one(params, "exportUrl", URL_KEYS, required=True)
    if export_type != "static":
        raise BadRequest("exportType dynamic (the gateway kicking off an export at the Data Provider) is not "
                         "supported: send exportType static with exportUrl naming the export's manifest")
    svc = _svc(request)
    svc._check_url(str(url), "exportUrl")  # before anything is stored
    client, subject = request_client_id(request), request_subject(request)

    def run() -> str:
        from ..resources.transaction import BundleProcessor

        # the reports in one transaction under the caller's grant: all stored or none
        BundleProcessor(rest, enforce_references=False).transaction(
            [{"resource": r, "request": {"method": "PUT", "url": f"MeasureReport/{r['id']}"} if r.get("id")
              else {"method": "POST", "url": "MeasureReport"}} for r in reports])
        sid = f"bulk-submit-data-{submission_key(client, 'deqm', str(url))[:16]}-{len(reports)}"
        return svc.submit(client, subject, "deqm|bulk-submit-data", sid, "completed", str(url), None,
                          str(request.url), kind="bulk-submit-data")

    key = await run_in_threadpool(run)
    return _accepted(svc, key, "Bulk data submission")


def _status_response(svc: SubmitService, key: str, request: Request) -> Response:
    done, body = svc.status(key, request_client_id(request), request_subject(request))
    if not done:
        return Response(status_code=202, headers={"X-Progress": body["submissionStatus"], "Retry-After": "2"})
    return Response(orjson.dumps(body), 200, media_type="application/json")


async def bulk_submit_status(request: Request, settings: Settings) -> Response:
    """``$bulk-submit-status`` by submitter and submissionId (POST Parameters, or GET query with
    ``submitter=system|value``)."""
    if request.method == "POST":
        submitter, sid = _submitter(_params(await read_json_body(request, settings.max_body_bytes),
                                            "bulk-submit-status"))
    else:
        submitter, sid = request.query_params.get("submitter", ""), request.query_params.get("submissionId", "")
        if "|" not in submitter or not sid:
            raise BadRequest("Give submitter (system|value) and submissionId")
    svc = _svc(request)
    key = submission_key(request_client_id(request), submitter, sid)
    return await run_in_threadpool(_status_response, svc, key, request)


def bulk_submit_status_of(job_id: str, request: Request) -> Response:
    """The status URL a submission request answered with (``job_id``: the submission's row id)."""
    return _status_response(_svc(request), job_id, request)


def bulk_submit_outcome(job_id: str, request: Request) -> Response:
    """The OperationOutcomes of one submitted manifest (NDJSON)."""
    data = _svc(request).outcome(job_id, request_client_id(request), request_subject(request))
    return Response(data, media_type=NDJSON)
