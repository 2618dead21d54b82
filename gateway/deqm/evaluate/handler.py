"""DEQM Measure/$evaluate (STU5 and the Universal-realm ballot): several measures at once, GET or POST, type and
instance level; the subject as ``subject`` or ``subjectGroup`` (inline Group or reference), CQL ``parameters``,
``productLine`` and ``reporter``. Returns
Parameters with one `return` Bundle per measure (and per patient for reportType=subject): the MeasureReport
followed by the data of interest (the resources its evaluation read)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...api.deps import Settings
from ...api.http import check_accept, fhir_response, pretty, read_json_body
from ...fhir.dates import now_instant
from ...fhir.errors import BadRequest
from ...fhir.parameters import parameter_list
from .uv import cql_parameters, inline_group_members, with_product_line

if TYPE_CHECKING:
    from ...store.base import ResourceStore

SINGLE = ("periodStart", "periodEnd", "reportType", "subject", "subjectGroup", "practitioner", "lastReceivedOn",
          "reporter", "productLine")
MULTI = ("measureId", "measureUrl", "measureIdentifier", "measure")
REPORT_TYPES = ("subject", "subject-list", "population")


@dataclass
class Inputs:
    """One $evaluate request's inputs, from the query string and (POST) the Parameters body."""

    single: dict[str, str] = field(default_factory=dict)
    multi: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in MULTI})
    measures: list[dict[str, Any]] = field(default_factory=list)  # measureResource
    group: dict[str, Any] | None = None  # subjectGroup given inline
    cql: dict[str, Any] = field(default_factory=dict)  # parameters, as CQL values


def _value(p: dict[str, Any]) -> Any:
    value = next((v for k, v in p.items() if k.startswith("value")), None)
    if isinstance(value, dict) and isinstance(value.get("reference"), str):  # valueReference
        return value["reference"]
    return value


async def _params(request: Request, settings: Any) -> Inputs:
    got = Inputs()
    for k, v in request.query_params.multi_items():
        if k in SINGLE:
            if k in got.single and got.single[k] != v:
                raise BadRequest(f"{k} is given more than once")
            got.single[k] = v
        elif k in MULTI:
            got.multi[k].append(v)
        elif k == "parameters":
            raise BadRequest("parameters is a Parameters resource: send it in a POST body")
    if request.method == "POST":
        body = await read_json_body(request, settings.max_body_bytes)
        for p in parameter_list(body, "POST $evaluate"):
            name = p.get("name")
            value = _value(p)
            resource = p.get("resource")
            if name == "measureResource" and isinstance(resource, dict):
                got.measures.append(resource)
            elif name == "subjectGroup" and resource is not None:
                if got.group is not None:
                    raise BadRequest("subjectGroup is given more than once")
                got.group = resource
                inline_group_members(resource)  # a malformed Group is refused before any evaluation
            elif name == "parameters":
                if got.cql or resource is None:
                    raise BadRequest("parameters must be given once, as a Parameters resource")
                got.cql = cql_parameters(resource)
            elif name in SINGLE and value is not None:
                if name in got.single and got.single[name] != str(value):
                    raise BadRequest(f"{name} is given more than once")
                got.single[name] = str(value)
            elif name in MULTI and value is not None:
                got.multi[name].append(str(value))
    if "subjectGroup" in got.single and got.group is not None:
        raise BadRequest("subjectGroup is given both inline and as a reference")
    if "subject" in got.single and ("subjectGroup" in got.single or got.group is not None):
        raise BadRequest("Give subject or subjectGroup, not both")
    ref = got.single.pop("subjectGroup", None)
    if ref is not None:
        if not ref.startswith("Group/") or not ref.partition("/")[2]:
            raise BadRequest(f"subjectGroup must be a Group resource or a Group/[id] reference, got {ref!r}")
        got.single["subject"] = ref  # a stored Group: evaluated exactly as subject=Group/[id]
    report_type = got.single.get("reportType")
    if report_type is not None and report_type not in REPORT_TYPES:
        raise BadRequest(f"reportType must be subject, subject-list or population, got {report_type!r}")
    if not (got.single.get("periodStart") and got.single.get("periodEnd")):
        raise BadRequest("periodStart and periodEnd are required")
    return got


def _bundle(report: dict[str, Any], store: ResourceStore, base: str) -> dict[str, Any]:
    entries = [{"fullUrl": f"urn:uuid:{report['id']}", "resource": report}]
    for ref in [r.get("reference", "") for r in report.get("evaluatedResource", [])]:
        if ref.startswith("#"):  # contained in the report (supplemental data Observations)
            continue
        rtype, _, rid = ref.partition("/")
        s = store.read(rtype, rid)
        if s is not None and not s.deleted:
            entries.append({"fullUrl": f"{base}/{ref}", "resource": orjson.Fragment(s.body)})
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection", "timestamp": now_instant(),
            "entry": entries}


async def _run(request: Request, settings: Any, measure_id: str | None) -> Response:
    check_accept(request)
    got = await _params(request, settings)
    single, multi = got.single, got.multi
    svc = request.app.state.measures
    store = request.app.state.rest.store  # gated: the report's evaluated resources as the caller may see them

    def work() -> dict[str, Any]:
        measures: list[dict[str, Any]] = list(got.measures)
        for mid in ([measure_id] if measure_id else []) + multi["measureId"]:
            measures.append(svc.find_measure(mid, None))
        for ref in multi["measureUrl"] + multi["measure"]:
            measures.append(svc.find_measure(None, ref))
        for ident in multi["measureIdentifier"]:
            measures.extend(svc.find_by_identifier(ident))
        if not measures:
            raise BadRequest("Name at least one measure: measureId, measureUrl, measureIdentifier or measure")
        report_type = single.get("reportType")
        subject = single.get("subject")
        inline = None
        if got.group is not None:  # its members must exist like a stored Group's subject would
            inline = [svc.subjects(f"Patient/{pid}")[0] for pid in inline_group_members(got.group)]
        extra: dict[str, Any] = {"practitioner": single.get("practitioner"),
                                 "last_received_on": single.get("lastReceivedOn"), "cql_parameters": got.cql}
        start, end, reporter = single.get("periodStart"), single.get("periodEnd"), single.get("reporter")
        product_line = single.get("productLine")
        out = []
        for m in measures:
            if report_type == "subject" and (inline is not None or (subject and subject.startswith("Group/"))):
                members = inline if inline is not None else svc.subjects(subject)
                if extra["practitioner"]:
                    members = svc.patients_of(extra["practitioner"], members, subject)
                for pid in members:  # one individual report per member
                    rep = svc.evaluate(m, start, end, "subject", f"Patient/{pid}", reporter, **extra)
                    out.append({"name": "return",
                                "resource": _bundle(with_product_line(rep, product_line), store, svc.base_url)})
                continue
            rep = svc.evaluate(m, start, end, report_type, subject, reporter, patient_ids=inline, **extra)
            out.append({"name": "return",
                        "resource": _bundle(with_product_line(rep, product_line), store, svc.base_url)})
        return {"resourceType": "Parameters", "parameter": out}

    result = await run_in_threadpool(work)
    return fhir_response(result, is_pretty=pretty(request))


async def evaluate_type(request: Request, settings: Settings) -> Response:
    return await _run(request, settings, None)


async def evaluate_instance(measure_id: str, request: Request, settings: Settings) -> Response:
    return await _run(request, settings, measure_id)
