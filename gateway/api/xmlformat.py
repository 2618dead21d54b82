"""FHIR XML on the wire for every /fhir interaction (R4 http.html#mime-type, formats).

A pure ASGI middleware, outside the auth middleware: the routes, the auth checks and the store see FHIR JSON
only, whatever format the client speaks.

- A request body sent as ``application/fhir+xml`` (``application/xml``, ``text/xml``) is converted to FHIR
  JSON before anything else reads it (create, update, FHIRPath Patch Parameters, batch/transaction, operation
  Parameters or resources); hostile or malformed XML is refused here with a 400 OperationOutcome.
- When the client asks for XML (``_format=xml`` or ``application/fhir+xml``/``application/xml``/``text/xml``,
  else the ``Accept`` media range with the highest quality), an answer in FHIR JSON (a resource, a Bundle,
  Parameters, an OperationOutcome error) goes out as FHIR XML. Other answers (Bulk NDJSON, binary, empty
  bodies) pass unchanged."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..fhir.errors import BadRequest, FhirError, PayloadTooLarge
from ..fhir.xml import available, from_xml, to_xml

FHIR_XML = "application/fhir+xml; charset=utf-8"
XML_MEDIA = ("application/fhir+xml", "application/xml", "text/xml")
XML_FORMAT_PARAMS = ("xml", *XML_MEDIA)
JSON_MEDIA = ("application/fhir+json", "application/json")


def wants_xml(query_string: bytes, accept: str) -> bool:
    """Whether the client asked for FHIR XML: ``_format`` decides when present, else the Accept range with
    the highest quality (the first on a tie)."""
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == "_format":
            # an unencoded '+' arrives as a space: "application/fhir xml" is application/fhir+xml
            return value.split(";")[0].strip().lower().replace(" ", "+") in XML_FORMAT_PARAMS
    best, best_q = "", -1.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            k, _, v = p.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if media and q > best_q:
            best, best_q = media.lower(), q
    return best in XML_MEDIA


def _outcome_response(exc: FhirError, xml: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    outcome = exc.outcome()
    if xml:
        body, ctype = to_xml(outcome), FHIR_XML
    else:
        body, ctype = orjson.dumps(outcome), "application/fhir+json; charset=utf-8"
    return exc.status, [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())], body


class XmlFormat:
    """Converts XML request bodies to JSON and JSON answers to XML when the client asked for XML."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.enabled = available()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.enabled or not scope.get("path", "").startswith("/fhir"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        xml_out = wants_xml(scope.get("query_string", b""), headers.get(b"accept", b"").decode("latin-1"))
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if ctype in XML_MEDIA:
            try:
                body = await self._read(scope, receive)
                converted = orjson.dumps(from_xml(body)) if body.strip() else b""
            except FhirError as exc:
                status, hdrs, out = _outcome_response(exc, xml_out)
                await send({"type": "http.response.start", "status": status, "headers": hdrs})
                await send({"type": "http.response.body", "body": out})
                return
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope.get("headers", [])
                                if k.lower() not in (b"content-type", b"content-length")]
            scope["headers"] += [(b"content-type", b"application/fhir+json"),
                                 (b"content-length", str(len(converted)).encode())]
            sent = False

            async def replay() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": converted, "more_body": False}
                return await receive()

            receive = replay
        if not xml_out:
            await self.app(scope, receive, send)
            return
        pretty = any(k == "_pretty" and v == "true"
                     for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        await self.app(scope, receive, _XmlSend(send, pretty))

    @staticmethod
    async def _read(scope: dict[str, Any], receive: Any) -> bytes:
        settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
        limit = getattr(settings, "max_body_bytes", 32 * 1024 * 1024)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("The client went away before the request body arrived")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _XmlSend:
    """The ``send`` of one response: a FHIR JSON answer is held, converted and sent as FHIR XML."""

    def __init__(self, send: Any, pretty: bool) -> None:
        self.send = send
        self.pretty = pretty
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            ctype = next((v for k, v in message.get("headers", []) if k.lower() == b"content-type"), b"")
            if ctype.decode("latin-1").split(";")[0].strip().lower() in JSON_MEDIA:
                self.start = message
                return
            await self.send(message)
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.chunks)
        start, self.start = self.start, None
        try:
            doc = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("resourceType"), str):
            body = to_xml(doc, self.pretty)
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-type", b"content-length")]
            headers += [(b"content-type", FHIR_XML.encode()), (b"content-length", str(len(body)).encode())]
            start = {**start, "headers": headers}
        await self.send(start)
        await self.send({"type": "http.response.body", "body": body})
