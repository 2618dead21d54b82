"""Bulk submission over HTTP: ``[base]/$bulk-submit`` (Bulk Data 4.0 ballot), ``Measure/$bulk-submit-data``
(DEQM), the submission status (``[base]/$bulk-submit-status``, by submitter and submissionId or by the status
URL) and the OperationOutcomes of a manifest (``[base]/$bulk-submit-outcome/[job]``)."""

from __future__ import annotations

import uuid
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


def _provider(params: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """``fhirBaseUrl`` and ``oauthMetadataUrl`` (the first one given: the gateway discovers one authorization
    server), when the request names them."""
    out: dict[str, Any] = {}
    base = _one(params, "fhirBaseUrl", URL_KEYS)
    if base is not None:
        out["fhirBaseUrl"] = str(base).rstrip("/")
    metas = params.get("oauthMetadataUrl") or []
    if metas:
        value = next((metas[0][k] for k in URL_KEYS if k in metas[0]), None)
        if not isinstance(value, str):
            raise BadRequest("Parameter oauthMetadataUrl must be a Url")
        out["oauthMetadataUrl"] = value
    return out or None


KICKOFF = ("_type", "_since", "_typeFilter")


def _kickoff(params: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The Bulk Data kick-off parameters a dynamic ``$bulk-submit-data`` passes on to the provider's export."""
    out: dict[str, Any] = {}
    for name in KICKOFF:
        values = [next((p[k] for k in ("valueString", "valueInstant", "valueDateTime", "valueCode") if k in p),
                       None) for p in params.get(name) or []]
        if any(not isinstance(v, str) or not v.strip() for v in values):
            raise BadRequest(f"Parameter {name} must be a non-empty string")
        if name != "_typeFilter" and len(values) > 1:
            raise BadRequest(f"Parameter {name} may appear only once")
        if values:
            out[name] = values if name == "_typeFilter" else values[0]
    return out


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
    source = _provider(params) if manifest is not None else None
    svc = _svc(request)
    key = await run_in_threadpool(svc.submit, request_client_id(request), request_subject(request), submitter, sid,
                                  status, manifest, replaces, str(request.url), "bulk-submit", source)
    return _accepted(svc, key, "Submission request")


async def bulk_submit_data(request: Request, settings: Settings, rest: Rest) -> Response:
    """DEQM ``Measure/$bulk-submit-data``: data-collection MeasureReport(s) and where their data is — the
    manifest of a finished export (``exportType`` static) or the provider's Bulk Data kick-off URL, which the
    gateway runs itself as a Backend Services client (``dynamic``, the default); the reports are stored, the
    data loaded as a one-manifest submission."""
    params = _params(await read_json_body(request, settings.max_body_bytes), "bulk-submit-data")
    reports: list[dict[str, Any]] = [p["resource"] for p in params.get("measureReport") or []
                                     if isinstance(p.get("resource"), dict)]
    if not reports or len(reports) != len(params.get("measureReport") or []) or not all(
            r.get("resourceType") == "MeasureReport" for r in reports):
        raise BadRequest("measureReport (one or more MeasureReport resources) is required")
    export_type = _one(params, "exportType", ("valueCode", "valueString")) or "dynamic"
    url = _one(params, "exportUrl", URL_KEYS, required=True)
    if export_type not in ("static", "dynamic"):
        raise BadRequest(f"exportType must be static or dynamic, not {export_type!r}")
    svc = _svc(request)
    source = _provider(params)
    if export_type == "dynamic":
        source = {**(source or {}), "exportUrl": str(url), "kickoff": _kickoff(params)}
        svc.check_source(source)  # before anything is stored
    else:
        svc._check_url(str(url), "exportUrl")  # before anything is stored
        if source is not None:
            svc.check_source(source)
    client, subject = request_client_id(request), request_subject(request)

    def run() -> str:
        from ..resources.transaction import BundleProcessor

        # the reports in one transaction under the caller's grant: all stored or none
        BundleProcessor(rest, enforce_references=False).transaction(
            [{"resource": r, "request": {"method": "PUT", "url": f"MeasureReport/{r['id']}"} if r.get("id")
              else {"method": "POST", "url": "MeasureReport"}} for r in reports])
        sid = (f"bulk-submit-data-{submission_key(client, 'deqm', str(url))[:16]}-{len(reports)}"
               if export_type == "static" else f"bulk-submit-data-{uuid.uuid4().hex}")  # each export is new
        return svc.submit(client, subject, "deqm|bulk-submit-data", sid, "completed",
                          str(url) if export_type == "static" else None, None, str(request.url),
                          kind="bulk-submit-data", source=source)

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
