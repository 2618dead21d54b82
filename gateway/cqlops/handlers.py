"""HTTP handlers of ``Library/$evaluate`` (type and instance level) and ``$cql`` (system level), GET with query
parameters and POST with a Parameters body (query parameters may accompany a POST).

Inputs are read per the CPG OperationDefinitions; a parameter the operation does not define, a value of the
wrong type or a repeated single parameter is a 400 OperationOutcome. ``prefetchData`` and the remote
``dataEndpoint``, ``contentEndpoint`` and ``terminologyEndpoint`` are refused with 501: this server makes no
outbound call for an evaluation and evaluates over its own data plus the request's ``data``."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Settings
from ..api.http import check_accept, fhir_response, pretty, read_json_body
from ..deqm.evaluate.uv import cql_parameters
from ..fhir.errors import BadRequest, FhirError
from ..fhir.parameters import parameter_list
from .service import CqlService, Inputs

CONTROL = {"_format", "_pretty", "_summary", "_elements"}
COMMON = {"subject", "parameters", "useServerData", "data", "prefetchData", "dataEndpoint", "contentEndpoint",
          "terminologyEndpoint"}
EVALUATE_IN = COMMON | {"expression", "url", "library"}
CQL_IN = COMMON | {"expression", "library"}
REFUSED = {"prefetchData": "prefetchData is not supported: send the data in 'data' (a Bundle) or let the server "
                           "read its own data (useServerData)",
           "dataEndpoint": "remote data endpoints are refused: this server makes no outbound call to evaluate; "
                           "send the data in 'data'",
           "contentEndpoint": "remote content endpoints are refused: the libraries must be stored in this server",
           "terminologyEndpoint": "remote terminology endpoints are refused: the value sets must be stored in "
                                  "this server"}
REFERENCE_VALUES = ("valueString", "valueReference", "valueUri", "valueCanonical", "valueUrl", "valueId")


class _Raw:
    """An operation's inputs by name as sent: query strings, and POST entries (the parameter objects)."""

    def __init__(self, op: str, allowed: set[str]) -> None:
        self.op = op
        self.allowed = allowed
        self.values: dict[str, list[Any]] = {}

    def add(self, name: str, value: Any) -> None:
        if name in CONTROL:
            return
        if name not in self.allowed:
            raise BadRequest(f"${self.op} has no parameter {name[:100]!r}")
        if name in REFUSED:
            raise FhirError(f"${self.op}: {REFUSED[name]}", status=501, code="not-supported")
        self.values.setdefault(name, []).append(value)

    def all(self, name: str) -> list[Any]:
        return self.values.get(name) or []

    def one(self, name: str) -> Any:
        vals = self.all(name)
        if len(vals) > 1:
            raise BadRequest(f"${self.op}: parameter {name} may appear only once")
        return vals[0] if vals else None

    def text(self, name: str) -> str | None:
        """A primitive given as a query string or as one of the string-like value[x] (a Reference's
        ``reference`` too, for subject)."""
        v = self.one(name)
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, dict):
            for key in REFERENCE_VALUES:
                got = v.get(key)
                if key == "valueReference" and isinstance(got, dict):
                    got = got.get("reference")
                if isinstance(got, str):
                    return got
        raise BadRequest(f"${self.op}: parameter {name} must be a string value")

    def texts(self, name: str) -> list[str]:
        out = []
        for v in self.all(name):
            got = v.get("valueString") if isinstance(v, dict) else v
            if not isinstance(got, str) or not got:
                raise BadRequest(f"${self.op}: every {name} must be a non-empty string (valueString)")
            out.append(got)
        return out

    def boolean(self, name: str, default: bool) -> bool:
        v = self.one(name)
        if v is None:
            return default
        if isinstance(v, dict):
            v = v.get("valueBoolean")
            if isinstance(v, bool):
                return v
        if v in ("true", "false"):
            return v == "true"
        raise BadRequest(f"${self.op}: parameter {name} must be true or false")

    def resource(self, name: str, rtype: str) -> dict[str, Any] | None:
        v = self.one(name)
        if v is None:
            return None
        res = v.get("resource") if isinstance(v, dict) else None
        if not isinstance(res, dict) or res.get("resourceType") != rtype:
            raise BadRequest(f"${self.op}: parameter {name} must be a {rtype} resource (POST body, 'resource')")
        return res


async def _read(request: Request, settings: Any, op: str, allowed: set[str]) -> _Raw:
    check_accept(request)
    raw = _Raw(op, allowed)
    for k, v in request.query_params.multi_items():
        if k in ("parameters", "data"):
            raise BadRequest(f"${op}: {k} is a resource: send it in a POST Parameters body")
        raw.add(k, v)
    if request.method == "POST":
        body = await read_json_body(request, settings.max_body_bytes)
        for p in parameter_list(body, f"POST ${op}"):
            raw.add(p["name"], p)
    return raw


def _data(raw: _Raw) -> list[dict[str, Any]]:
    bundle = raw.resource("data", "Bundle")
    if bundle is None:
        return []
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest(f"${raw.op}: data: Bundle.entry must be an array")
    out = []
    for i, e in enumerate(entries):
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise BadRequest(f"${raw.op}: data: Bundle.entry[{i}] has no resource")
        out.append(res)
    return out


def _inputs(raw: _Raw) -> Inputs:
    params = raw.resource("parameters", "Parameters")
    return Inputs(subject=raw.text("subject"), parameters=cql_parameters(params, ()) if params else {},
                  use_server_data=raw.boolean("useServerData", True), data=_data(raw))


def _service(request: Request, settings: Any) -> CqlService:
    svc: CqlService = request.app.state.cql
    return svc


async def _evaluate(request: Request, settings: Any, library_id: str | None) -> Response:
    raw = await _read(request, settings, "evaluate", EVALUATE_IN)
    inputs = _inputs(raw)
    inputs.expressions = raw.texts("expression")
    canonical = raw.text("url") or raw.text("library")
    if raw.one("url") is not None and raw.one("library") is not None:
        raise BadRequest("$evaluate: give the library as url or as library, not both")
    if library_id is None and not canonical:
        raise BadRequest("Name the library: Library/[id]/$evaluate or the 'url' parameter (canonical|version)")
    svc = _service(request, settings)

    def work() -> dict[str, Any]:
        res = svc.library_by_id(library_id) if library_id is not None else svc.library_by_url(str(canonical))
        return svc.evaluate_library(res, inputs)

    return fhir_response(await run_in_threadpool(work), is_pretty=pretty(request))


async def evaluate_type(request: Request, settings: Settings) -> Response:
    """``Library/$evaluate?url=...``: the library named by canonical."""
    return await _evaluate(request, settings, None)


async def evaluate_instance(rid: str, request: Request, settings: Settings) -> Response:
    """``Library/[id]/$evaluate``: the stored library ``rid``."""
    return await _evaluate(request, settings, rid)


def _libraries(raw: _Raw) -> list[tuple[str, str]]:
    """The ``library`` inputs: (canonical, alias) from their ``url`` and ``name`` parts."""
    out = []
    for v in raw.all("library"):
        parts = v.get("part") if isinstance(v, dict) else None
        if not isinstance(parts, list):
            raise BadRequest("$cql: library needs parts url (the Library canonical) and name (its alias)")
        got: dict[str, str] = {}
        for p in parts:
            name = p.get("name")
            value = next((x for k, x in p.items() if k.startswith("value")), None)
            if name not in ("url", "name") or not isinstance(value, str) or name in got:
                raise BadRequest("$cql: library parts are url and name, each once, with a string value")
            got[name] = value
        if set(got) != {"url", "name"}:
            raise BadRequest("$cql: library needs both parts, url and name")
        out.append((got["url"], got["name"]))
    if len(out) > 20:
        raise BadRequest("$cql: at most 20 libraries may be included")
    return out


async def cql(request: Request, settings: Settings) -> Response:
    """``$cql``: one CQL expression evaluated, answered as the ``return`` parameter(s)."""
    raw = await _read(request, settings, "cql", CQL_IN)
    inputs = _inputs(raw)
    expression = raw.text("expression")
    if expression is None:
        raise BadRequest("$cql needs the expression parameter (CQL text of one expression)")
    libraries = _libraries(raw)
    svc = _service(request, settings)
    body = await run_in_threadpool(svc.evaluate_expression, expression, libraries, inputs)
    return fhir_response(body, is_pretty=pretty(request))
