"""POST /fhir/$ingest/{format}: systems that push files (a CCLF or claims CSV file, an 837 interchange, HL7 v2
messages) send the file as the request body; the response is an OperationOutcome with the run's summary and one
issue per rejected record (where and why). Unknown formats are 404; a body over the size limit is 413."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Rest, Settings
from ..api.http import fhir_response, pretty
from ..fhir.errors import BadRequest, Issue, NotFound, PayloadTooLarge, operation_outcome
from ..mapping.spec import SpecError, available, find_spec
from .service import Ingestor

DEFAULT_NAMES = {"hl7v2": "upload.hl7", "x12-837": "upload.837", "claims-csv": "claims.csv"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


async def ingest(fmt: str, request: Request, rest: Rest, settings: Settings) -> Response:
    if fmt not in available():
        raise NotFound(f"No mapping for format '{fmt}' (known: {', '.join(available())})", code="not-supported")
    name = request.query_params.get("filename") or DEFAULT_NAMES.get(fmt, f"upload.{fmt}")
    if not SAFE_NAME.match(name):
        raise BadRequest(f"filename {name!r}: use letters, digits, '.', '_' and '-' only")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > settings.max_body_bytes:
            raise PayloadTooLarge(f"Request body exceeds the limit of {settings.max_body_bytes} bytes")
    if not body:
        raise BadRequest("The request body is empty: send the file's content")

    def work() -> dict:
        try:
            spec = find_spec(fmt)
        except SpecError as exc:
            raise NotFound(str(exc), code="not-supported") from None
        with tempfile.TemporaryDirectory(prefix="gateway-ingest-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(bytes(body))
            summary = Ingestor(rest, spec).ingest([path])
        if summary.files == 0:
            raise BadRequest(f"filename {name!r} is not a file the '{fmt}' mapping reads (see docs/guides/mappings.md)")
        issues = [Issue("information", "informational",
                        f"{fmt} mapping {summary.mapping_version}: {summary.records} records read, "
                        f"{summary.created} resources created, {summary.updated} updated, "
                        f"{summary.unchanged} unchanged, "
                        f"{len(summary.rejects)} records rejected")]
        issues += [Issue("error", "invalid", f"{r.where}: {r.reason}", [r.field] if r.field else [])
                   for r in summary.rejects]
        return operation_outcome(issues)

    outcome = await run_in_threadpool(work)
    return fhir_response(outcome, is_pretty=pretty(request))
