"""POST /fhir/$ingest/{format}: systems that push files (a CCLF or claims CSV file, an 837 interchange, HL7 v2
messages) send the file as the request body; the response is an OperationOutcome with the run's summary, one
issue per rejected record (where and why), one warning issue per data-quality rule records were loaded despite,
and the whole data-quality report as JSON (``ingest/report.py``); the run is recorded (``ingest/runs.py``). ``?strictness=strict|lenient`` overrides the
mapping's strictness. Unknown formats are 404; a body over the size limit is 413; a body the mapping reads nothing
from (no file it recognises, no record and no reject) is 400 and stores nothing."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Rest, Settings
from ..api.http import fhir_response, pretty
from ..fhir.errors import BadRequest, NotFound, PayloadTooLarge
from ..mapping.spec import STRICTNESS, SpecError, available, find_spec
from ..store.sql.feeds import now_instant
from .report import ingest_outcome
from .runs import caller, record
from .service import Ingestor

DEFAULT_NAMES = {"hl7v2": "upload.hl7", "x12-837": "upload.837", "x12-835": "upload.835",
                 "claims-csv": "claims.csv"}
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

    strictness = request.query_params.get("strictness")
    if strictness is not None and strictness not in STRICTNESS:
        raise BadRequest(f"strictness {strictness!r}: use {' or '.join(STRICTNESS)}")

    client, subject = caller(request)
    started = now_instant()

    def work() -> dict:
        try:
            spec = find_spec(fmt)
        except SpecError as exc:
            raise NotFound(str(exc), code="not-supported") from None
        with tempfile.TemporaryDirectory(prefix="gateway-ingest-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(bytes(body))
            summary = Ingestor(rest, spec, strictness=strictness).ingest([path])
        if summary.files == 0 or (summary.records == 0 and not summary.rejects):
            why = "; ".join(f"{r.where}: {r.reason}" for r in summary.rejects[:3])
            raise BadRequest(f"filename {name!r}: the '{fmt}' mapping read no records from the body; nothing was "
                             f"stored{': ' + why if why else ''} (see docs/guides/mappings.md)")
        # a run that read records is recorded (ingest/runs.py); a refused body leaves no trace but the audit
        record(request.app.state.store, summary, [name], "http", started, client, subject)
        return ingest_outcome(fmt, summary)

    outcome = await run_in_threadpool(work)
    return fhir_response(outcome, is_pretty=pretty(request))
