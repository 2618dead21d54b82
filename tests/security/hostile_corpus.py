"""A corpus of malformed requests, generated from the routes the FastAPI app exposes.

Every route the app serves (walked with ``gateway.auth.routing.iter_routes``, so routes added later, or
declared through an operation registry, are covered without new test code) is tried with hostile path
parameters, hostile query strings and, for methods that take a body, hostile bodies: broken JSON, wrong
JSON types, nesting far beyond any real resource, NUL bytes, Parameters and Bundles of the wrong shape,
JSON Patch documents that replace the whole resource, unknown contained types, huge numbers.

The properties checked by the tests (tests/security/test_hostile_corpus.py): no answer of 500, always an
answer, every 4xx an OperationOutcome (OAuth error JSON or an HTML page under /auth), and a refused request
leaves the stored resources and their history exactly as they were.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from gateway.auth.routing import iter_routes
from gateway.store.sql.tables import HISTORY, RESOURCE

PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
BODY_METHODS = {"POST", "PUT", "PATCH"}

SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Hostile", "given": ["Seed"]}],
     "gender": "female", "birthDate": "1970-01-01"},
    {"resourceType": "Observation", "id": "o1", "status": "final",
     "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
     "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-03-01"},
    {"resourceType": "Measure", "id": "m1", "url": "http://example.org/Measure/m1", "status": "active",
     "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring",
                             "code": "proportion"}]}},
    {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
     "member": [{"entity": {"reference": "Patient/p1"}}]},
]


@dataclass(frozen=True)
class Case:
    """One request: method, path with query string (already encoded), body bytes and content type."""

    method: str
    url: str
    body: bytes | None = None
    content_type: str = "application/fhir+json"
    label: str = ""
    headers: tuple[tuple[str, str], ...] = field(default=())

    def request_headers(self) -> dict[str, str]:
        out = {"Accept": "application/fhir+json"}
        if self.body is not None:
            out["Content-Type"] = self.content_type
        out.update(dict(self.headers))
        return out


def _nest(depth: int, leaf: str, key: str, extra: str = "") -> str:
    """JSON text: ``depth`` levels of ``{extra key: [ ... ]}`` around ``leaf`` (text, so no encoder recursion)."""
    return ("{" + extra + json.dumps(key) + ":[") * depth + leaf + "]}" * depth


def deep_extension(rtype: str, depth: int = 250) -> bytes:
    url = '"url":"http://example.org/x",'
    inner = _nest(depth, '{' + url + '"valueString":"leaf"}', "extension", url)
    return ('{"resourceType":' + json.dumps(rtype) + ',"extension":[' + inner + "]}").encode()


def deep_contained(rtype: str, depth: int = 300) -> bytes:
    inner = _nest(depth, '{"resourceType":"Patient","id":"c"}', "contained", '"resourceType":"Patient",')
    return ('{"resourceType":' + json.dumps(rtype) + ',"contained":[' + inner + "]}").encode()


def nested_bundles(depth: int = 60, kind: str = "batch") -> bytes:
    head = ('{"resourceType":"Bundle","type":' + json.dumps(kind)
            + ',"entry":[{"request":{"method":"POST","url":"Bundle"},"resource":')
    return (head * depth + '{"resourceType":"Patient"}' + "}]}" * depth).encode()


def parameters(parameter: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": parameter}


def hostile_bodies(rtype: str) -> list[tuple[str, bytes, str]]:
    """(label, body, content type) triples; ``rtype`` is the resource type the route expects, if any."""
    j = "application/fhir+json"

    def d(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    plain = {"resourceType": rtype, "id": "p1"}
    bodies: list[tuple[str, bytes, str]] = [
        ("empty", b"", j),
        ("whitespace", b"  \n ", j),
        ("truncated", b'{"resourceType": "Patient", "name": [', j),
        ("not-json", b"resourceType=Patient", j),
        ("bad-utf8", b'{"resourceType": "Patient", "id": "\xff\xfe"}', j),
        ("array", b"[]", j),
        ("array-of-resources", d([plain, plain]), j),
        ("string", b'"Patient"', j),
        ("null", b"null", j),
        ("number", b"12", j),
        ("empty-object", b"{}", j),
        ("unknown-type", d({"resourceType": "NoSuchType", "id": "x"}), j),
        ("resourceType-array", d({"resourceType": ["Patient"]}), j),
        ("resourceType-null", d({"resourceType": None}), j),
        ("deep-extension", deep_extension(rtype), j),
        ("deep-extension-600", deep_extension(rtype, 600), j),
        ("deep-contained", deep_contained(rtype), j),
        ("deep-array", b"[" * 900 + b"]" * 900, j),
        ("deep-object", _nest(400, "{}", "a").encode(), j),
        ("nested-bundles", nested_bundles(), j),
        ("nested-transactions", nested_bundles(40, "transaction"), j),
        ("nul-in-value", d({**plain, "name": [{"family": "a\u0000b"}]}), j),
        ("nul-in-key", d({**plain, "na\u0000me": [{"family": "x"}]}), j),
        ("nul-in-id", d({**plain, "id": "p\u00001"}), j),
        ("huge-number", b'{"resourceType": "%s", "multipleBirthInteger": 1' % rtype.encode() + b"0" * 400 + b"}", j),
        ("float-overflow", b'{"resourceType": "%s", "valueDecimal": 1e999}' % rtype.encode(), j),
        ("contained-unknown-type", d({**plain, "contained": [{"resourceType": "Spaceship", "id": "s"}]}), j),
        ("contained-not-object", d({**plain, "contained": ["x", 1, None]}), j),
        ("contained-object", d({**plain, "contained": {"resourceType": "Patient"}}), j),
        ("meta-wrong-type", d({**plain, "meta": "x"}), j),
        ("id-wrong-type", d({**plain, "id": {"a": 1}}), j),
        ("parameters-object", d(parameters({"name": "periodStart", "valueDate": "2025-01-01"})), j),
        ("parameters-string", d(parameters("x")), j),
        ("parameters-scalars", d(parameters([1, "x", None, []])), j),
        ("parameters-no-name", d(parameters([{"valueString": "x"}])), j),
        ("parameters-name-object", d(parameters([{"name": {"a": 1}, "valueString": "x"}])), j),
        ("parameters-value-object", d(parameters([{"name": "subject", "valueReference": {"reference": 5}},
                                                  {"name": "periodStart", "valueDate": {"a": 1}}])), j),
        ("parameters-resource-scalar", d(parameters([{"name": "resource", "resource": "Patient"}])), j),
        ("parameters-resource-deep", b'{"resourceType":"Parameters","parameter":[{"name":"resource","resource":'
         + deep_contained("Patient") + b"}]}", j),
        ("parameters-bundle-object", d(parameters([{"name": "bundle", "resource": {
            "resourceType": "Bundle", "type": "collection", "entry": {"resource": plain}}}])), j),
        ("parameters-part-deep", ('{"resourceType":"Parameters","parameter":['
                                  + _nest(300, '{"name":"x","valueString":"y"}', "part", '"name":"deep",')
                                  + "]}").encode(), j),
        ("bundle-entry-object", d({"resourceType": "Bundle", "type": "batch", "entry": {"resource": plain}}), j),
        ("bundle-entry-scalars", d({"resourceType": "Bundle", "type": "transaction", "entry": [1, "x", None]}), j),
        ("bundle-request-garbage", d({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": plain, "request": "POST"},
            {"resource": plain, "request": {"method": 7, "url": ["Patient"]}},
            {"resource": "x", "request": {"method": "PUT", "url": "Patient/p1"}}]}), j),
        ("bundle-type-object", d({"resourceType": "Bundle", "type": {"a": 1}, "entry": []}), j),
        ("bundle-nul-url", d({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Patient?name=a\u0000b"}},
            {"request": {"method": "GET", "url": "Patient/\u0000"}}]}), j),
        ("patch-replace-root-array", d([{"op": "replace", "path": "", "value": []}]), "application/json-patch+json"),
        ("patch-replace-root-scalar", d([{"op": "replace", "path": "", "value": "x"}]),
         "application/json-patch+json"),
        ("patch-object", d({"op": "replace", "path": "/gender", "value": "male"}), "application/json-patch+json"),
        ("patch-scalars", d([1, None, "x"]), "application/json-patch+json"),
        ("patch-bad-op", d([{"op": "explode", "path": "/id"}, {"path": 5}]), "application/json-patch+json"),
        ("patch-nul", d([{"op": "add", "path": "/name", "value": [{"family": "a\u0000"}]}]),
         "application/json-patch+json"),
        ("patch-deep", ('[{"op":"add","path":"/contained","value":['
                        + _nest(300, "{}", "contained", '"resourceType":"Patient",') + "]}]").encode(),
         "application/json-patch+json"),
        ("fhirpath-patch-object", d(parameters({"name": "operation"})), j),
        ("fhirpath-patch-bad-parts", d(parameters([{"name": "operation", "part": "x"},
                                                   {"name": "operation", "part": [1, None]}])), j),
        ("xml", b"<?xml version='1.0'?><!DOCTYPE p [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
                b"<Patient xmlns='http://hl7.org/fhir'><id value='&x;'/></Patient>", "application/fhir+xml"),
        ("text", b"hello", "text/plain"),
        ("form", b"a=b&c=%00", "application/x-www-form-urlencoded"),
        ("long-string", d({**plain, "name": [{"family": "x" * 200_000}]}), j),
        ("many-entries", d({"resourceType": "Bundle", "type": "batch",
                            "entry": [{"request": {"method": "GET", "url": "Patient/p1"}}] * 300}), j),
    ]
    return bodies


HOSTILE_QUERIES: list[tuple[str, str]] = [
    ("count-text", "_count=abc"),
    ("count-negative", "_count=-5"),
    ("count-huge", "_count=99999999999999999999"),
    ("format-xml", "_format=xml"),
    ("format-garbage", "_format=%00%ff"),
    ("elements-garbage", "_elements=,,,%2A"),
    ("summary-garbage", "_summary=maybe"),
    ("period-year", "periodStart=2025&periodEnd=2025"),
    ("period-garbage", "periodStart=not-a-date&periodEnd=2025-13-45"),
    ("period-reversed", "periodStart=2025-12-31&periodEnd=2024-01-01"),
    ("subject-garbage", "subject=Patient/&subject=%2F%2F&reportType=bogus"),
    ("type-repeated", "_type=" + ",".join(["Patient"] * 3000)),
    ("type-unknown", "_type=Spaceship,,%00"),
    ("since-garbage", "_since=yesterday&_until=2025-99-99"),
    ("params-repeated", "&".join(["measureId=m1"] * 300)),
    ("invalid-utf8", "measureId=%C3%28&status=%FF"),
    ("long-value", "measureId=" + "x" * 20000),
    ("bool-garbage", "isDocument=perhaps&_pretty=1"),
]

HOSTILE_IDS = ["9" * 30, "%00", "%C3%28"]


def _fill(template: str, hostile: dict[str, str] | None = None) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if hostile and name in hostile:
            return hostile[name]
        if "type" in name:
            return "Patient"
        if name.startswith("measure"):
            return "m1"
        if name.startswith("group"):
            return "g1"
        if name == "fmt":
            return "claims-csv"
        if name in ("vid", "version"):
            return "1"
        if name == "pid":
            return "p1"
        if "job" in name:
            return "no-such-job"
        if name == "name":
            return "Patient.ndjson"
        if name == "ctype":
            return "Observation"
        return "p1"

    return PARAM.sub(value, template)


def route_table(app: Any) -> list[tuple[str, str]]:
    """(method, template) of every route the app serves, HEAD and OPTIONS aside, in a stable order."""
    out = set()
    for path, methods in iter_routes(app.router.routes):
        for m in methods:
            if m not in ("HEAD", "OPTIONS"):
                out.add((m, path))
    return sorted(out)


def _route_type(template: str) -> str:
    for rtype in ("Measure", "Group", "Patient", "Bundle", "Parameters"):
        if f"/{rtype}" in template:
            return rtype
    return "Parameters" if "$" in template else "Patient"


# every route that takes a body gets these; the other bodies are spread over the routes in turn, each route
# getting the ones of its own kind (Parameters for operations, Bundles for the system route, patches for
# PATCH) and every fourth of the rest
ALWAYS = {"empty", "truncated", "not-json", "bad-utf8", "array", "string", "null", "empty-object", "unknown-type",
          "resourceType-array", "deep-extension", "deep-contained", "deep-array", "nested-bundles", "nul-in-value",
          "huge-number", "contained-unknown-type", "xml", "text"}
QUERIES_PER_ROUTE = 3


def _kind(method: str, template: str) -> str:
    if method == "PATCH":
        return "patch-"
    if "$" in template:
        return "parameters-"
    if template.rstrip("/") == "/fhir":
        return "bundle-"
    return "-"


def cases(app: Any) -> Iterator[Case]:
    """The corpus: every route of ``app`` with hostile path parameters, queries and bodies."""
    routes = route_table(app)
    turn = 0
    for i, (method, template) in enumerate(routes):
        names = PARAM.findall(template)
        base_url = _fill(template)
        rtype = _route_type(template)
        for name in names:
            for hid in HOSTILE_IDS:
                yield Case(method, _fill(template, {name: hid}), b"{}" if method in BODY_METHODS else None,
                           label=f"{method} {template} {name}={hid}")
        for k in range(QUERIES_PER_ROUTE):
            label, q = HOSTILE_QUERIES[(i * QUERIES_PER_ROUTE + k) % len(HOSTILE_QUERIES)]
            body = json.dumps({"resourceType": rtype}).encode() if method in BODY_METHODS else None
            yield Case(method, f"{base_url}?{q}", body, label=f"{method} {template} ?{label}")
        if method in BODY_METHODS:
            kind = _kind(method, template)
            for label, body, ctype in hostile_bodies(rtype):
                turn += 1
                if label in ALWAYS or label.startswith(kind) or turn % 4 == 0:
                    yield Case(method, base_url, body, ctype, label=f"{method} {template} body:{label}")
        else:
            yield Case(method, base_url, b'{"resourceType": "Patient"}' + b"\x00" * 10,
                       label=f"{method} {template} unexpected-body")
    for route in ["/fhir/Patient/p1/$nope", "/fhir/$nope", "/fhir/Patient/p1/_history/" + "9" * 25,
                  "/fhir/Patient/_history/abc", "/fhir/" + quote("Patient\x00") + "/p1", "/fhir/%ff%fe",
                  "/fhir/Patient?" + quote("na\x00me") + "=x", "/fhir//Patient//p1", "/fhir/Patient/p1/" * 40]:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            yield Case(method, route, b"{}" if method in BODY_METHODS else None, label=f"{method} {route[:60]}")


def store_digest(store: Any) -> str:
    """A digest of every stored resource version and the history: equal digests, unchanged store."""
    h = hashlib.sha256()
    with store.engine.connect() as conn:
        for table in (RESOURCE, HISTORY):
            cols = [c for c in table.c if c.name != "pk"]
            for row in conn.execute(select(*cols).order_by(*[table.c.res_type, table.c.res_id, table.c.version])):
                h.update(repr(tuple(row)).encode())
    return h.hexdigest()
