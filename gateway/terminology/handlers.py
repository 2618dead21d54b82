"""HTTP handlers of the terminology operations (GET with query parameters, POST with a Parameters body).

Inputs are read per the R4 OperationDefinitions; a parameter an operation does not define, a malformed
integer or boolean, or a Coding that is not an object is a 400 OperationOutcome."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Rest, Settings
from ..api.http import check_accept, fhir_response, pretty, read_json_body
from ..fhir.dates import DateParseError, parse_range
from ..fhir.errors import BadRequest
from ..fhir.parameters import parameter_list
from .service import MAX_COUNT, Coding, TerminologyService

CONTROL = {"_format", "_pretty", "_summary", "_elements"}
EXPAND_IN = {"url", "valueSet", "valueSetVersion", "context", "contextDirection", "filter", "date", "offset",
             "count", "includeDesignations", "designation", "includeDefinition", "activeOnly", "excludeNested",
             "excludeNotForUI", "excludePostCoordinated", "displayLanguage"}
# R4 $expand inputs that pin or exclude code system versions: refused with a clear 400 rather than ignored
EXPAND_UNSUPPORTED = {"exclude-system", "system-version", "check-system-version", "force-system-version"}
VALIDATE_IN = {"url", "context", "valueSet", "valueSetVersion", "code", "system", "systemVersion", "display",
               "coding", "codeableConcept", "date", "abstract", "displayLanguage"}
LOOKUP_IN = {"code", "system", "version", "coding", "date", "displayLanguage", "property"}
SUBSUMES_IN = {"codeA", "codeB", "system", "version", "codingA", "codingB"}


class Inputs:
    """An operation's inputs by name: primitives as strings, complex values (Coding, CodeableConcept) and
    resources as dicts."""

    def __init__(self, op: str) -> None:
        self.op = op
        self.values: dict[str, list[Any]] = {}

    def add(self, name: str, value: Any) -> None:
        self.values.setdefault(name, []).append(value)

    def one(self, name: str) -> Any:
        vals = self.values.get(name) or []
        if len(vals) > 1:
            raise BadRequest(f"${self.op}: parameter {name} may appear only once")
        return vals[0] if vals else None

    def text(self, name: str) -> str | None:
        v = self.one(name)
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"${self.op}: parameter {name} must be a primitive value")
        return v

    def integer(self, name: str, default: int | None) -> int | None:
        v = self.text(name)
        if v is None:
            return default
        if not v.isdigit() or len(v) > 9:
            raise BadRequest(f"${self.op}: parameter {name} must be a non-negative integer, got {v!r}")
        return int(v)

    def boolean(self, name: str) -> bool:
        v = self.text(name)
        if v is None:
            return False
        if v not in ("true", "false"):
            raise BadRequest(f"${self.op}: parameter {name} must be true or false, got {v!r}")
        return v == "true"

    def coding(self, name: str) -> Coding | None:
        v = self.one(name)
        if v is None:
            return None
        if not isinstance(v, dict) or not isinstance(v.get("code"), str) or not v["code"]:
            raise BadRequest(f"${self.op}: parameter {name} must be a Coding with a code")
        return _coding(v, self.op, name)

    def resource(self, name: str) -> dict[str, Any] | None:
        v = self.one(name)
        if v is not None and not isinstance(v, dict):
            raise BadRequest(f"${self.op}: parameter {name} must be a resource")
        return v


def _coding(v: dict[str, Any], op: str, name: str) -> Coding:
    for k in ("system", "code", "display", "version"):
        if v.get(k) is not None and not isinstance(v.get(k), str):
            raise BadRequest(f"${op}: {name}.{k} must be a string")
    return Coding(v.get("system"), v["code"], v.get("display"), v.get("version"))


async def _read(request: Request, settings: Any, op: str, allowed: set[str],
                unsupported: frozenset[str] | set[str] = frozenset()) -> Inputs:
    check_accept(request)
    out = Inputs(op)
    for name, qvalue in request.query_params.multi_items():
        if name not in CONTROL:
            out.add(name, qvalue)
    if request.method == "POST":
        for p in parameter_list(await read_json_body(request, settings.max_body_bytes), f"POST ${op}"):
            if isinstance(p.get("resource"), dict):
                out.add(p["name"], p["resource"])
                continue
            value: Any = next((v for k, v in p.items() if k.startswith("value")), None)
            if value is None:
                raise BadRequest(f"${op}: parameter {p['name']} has no value")
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, int | float):
                value = str(value)
            out.add(p["name"], value)
    refused = sorted(set(out.values) & unsupported)
    if refused:
        raise BadRequest(f"${op}: {', '.join(refused)} is not supported by this server (code system versions "
                         "are those of the stored CodeSystems)")
    unknown = sorted(set(out.values) - allowed)
    if unknown:
        raise BadRequest(f"${op} does not take {', '.join(unknown)}")
    date = out.text("date") if "date" in allowed else None
    if date is not None:  # accepted (the stored content is the content at any date), but it must be a date
        try:
            parse_range(date)
        except (DateParseError, ValueError):
            raise BadRequest(f"${op}: date must be a FHIR dateTime, got {date!r}") from None
    return out


def _respond(request: Request, body: dict[str, Any]) -> Response:
    return fhir_response(body, is_pretty=pretty(request))


async def _expand(request: Request, rest: Any, settings: Any, rid: str | None) -> Response:
    p = await _read(request, settings, "expand", EXPAND_IN, EXPAND_UNSUPPORTED)
    offset = p.integer("offset", 0) or 0
    count = p.integer("count", None)
    if count is not None and count > MAX_COUNT:
        raise BadRequest(f"$expand: count may be at most {MAX_COUNT}")
    svc = TerminologyService(rest)

    def work() -> dict[str, Any]:
        vs, stored = svc.value_set(rid, p.text("url"), p.resource("valueSet"), p.text("valueSetVersion"))
        return svc.expand(vs, stored, p.text("filter"), offset, count, p.boolean("activeOnly"))

    return _respond(request, await run_in_threadpool(work))


async def expand_type(request: Request, rest: Rest, settings: Settings) -> Response:
    """ValueSet/$expand."""
    return await _expand(request, rest, settings, None)


async def expand_instance(rid: str, request: Request, rest: Rest, settings: Settings) -> Response:
    """ValueSet/[id]/$expand."""
    return await _expand(request, rest, settings, rid)


async def _validate(request: Request, rest: Any, settings: Any, rid: str | None) -> Response:
    p = await _read(request, settings, "validate-code", VALIDATE_IN)
    codings: list[Coding] = []
    code = p.text("code")
    if code:
        codings.append(Coding(p.text("system"), code, None, p.text("systemVersion")))
    c = p.coding("coding")
    if c:
        codings.append(c)
    cc = p.one("codeableConcept")
    if cc is not None:
        if not isinstance(cc, dict) or not isinstance(cc.get("coding", []), list):
            raise BadRequest("$validate-code: codeableConcept must be a CodeableConcept")
        for i, item in enumerate(cc.get("coding") or []):
            if not isinstance(item, dict) or not isinstance(item.get("code"), str):
                raise BadRequest(f"$validate-code: codeableConcept.coding[{i}] must be a Coding with a code")
            codings.append(_coding(item, "validate-code", f"codeableConcept.coding[{i}]"))
    if not codings:
        raise BadRequest("$validate-code needs code (with system), coding or codeableConcept")
    if code and not p.text("system") and rid is None and p.text("url") is None:
        raise BadRequest("$validate-code: a code needs its system")
    display = p.text("display")
    svc = TerminologyService(rest)

    def work() -> dict[str, Any]:
        vs, stored = svc.value_set(rid, p.text("url"), p.resource("valueSet"), p.text("valueSetVersion"))
        return svc.validate_code(vs, stored, codings, display)

    return _respond(request, await run_in_threadpool(work))


async def validate_code_type(request: Request, rest: Rest, settings: Settings) -> Response:
    """ValueSet/$validate-code."""
    return await _validate(request, rest, settings, None)


async def validate_code_instance(rid: str, request: Request, rest: Rest, settings: Settings) -> Response:
    """ValueSet/[id]/$validate-code."""
    return await _validate(request, rest, settings, rid)


async def lookup_type(request: Request, rest: Rest, settings: Settings) -> Response:
    """CodeSystem/$lookup: code + system [+ version], or coding."""
    p = await _read(request, settings, "lookup", LOOKUP_IN)
    coding = p.coding("coding")
    code = p.text("code")
    if coding is not None and code is not None:
        raise BadRequest("$lookup takes code and system, or coding, not both")
    if coding is None:
        if not code:
            raise BadRequest("$lookup needs code and system, or coding")
        coding = Coding(p.text("system"), code, None, p.text("version"))
    if not coding.system:
        raise BadRequest("$lookup needs the code's system")
    props = [x for x in p.values.get("property", []) if isinstance(x, str)]
    svc = TerminologyService(rest)
    return _respond(request, await run_in_threadpool(svc.lookup, coding, props))


async def _subsumes(request: Request, rest: Any, settings: Any, rid: str | None) -> Response:
    p = await _read(request, settings, "subsumes", SUBSUMES_IN)
    system = p.text("system")
    a = p.coding("codingA") or (Coding(system, x) if (x := p.text("codeA")) else None)
    b = p.coding("codingB") or (Coding(system, y) if (y := p.text("codeB")) else None)
    if a is None or b is None:
        raise BadRequest("$subsumes needs codeA and codeB, or codingA and codingB")
    if (p.one("codingA") is not None and p.one("codeA") is not None) or (
            p.one("codingB") is not None and p.one("codeB") is not None):
        raise BadRequest("$subsumes takes codeA/codeB or codingA/codingB, not both")
    if rid is None and not (system or a.system or b.system):
        raise BadRequest("$subsumes needs the system (or codings with a system)")
    svc = TerminologyService(rest)
    return _respond(request, await run_in_threadpool(svc.subsumes, rid, a, b, system, p.text("version")))


async def subsumes_type(request: Request, rest: Rest, settings: Settings) -> Response:
    """CodeSystem/$subsumes."""
    return await _subsumes(request, rest, settings, None)


async def subsumes_instance(rid: str, request: Request, rest: Rest, settings: Settings) -> Response:
    """CodeSystem/[id]/$subsumes."""
    return await _subsumes(request, rest, settings, rid)
