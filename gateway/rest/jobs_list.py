"""``GET [base]/$jobs``: the asynchronous jobs (Bulk exports, asynchronous ``$care-gaps``, bulk submissions) a
caller may know of, newest first, with their status: the jobs it started (the same client and user, or the
same signed-in user through another app), and every job when the grant holds ``JOBS_ALL_SCOPE``.

A job row is the gateway's own bookkeeping, not a FHIR resource, so the store gate has nothing to decide on
it; ownership is decided here as the status endpoints decide it (``bulk/service.py`` ``owned_job``), and the
listing shows no job's output: its files stay behind those endpoints and their grant checks."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.http import fhir_response, pretty
from ..api.identity import request_client_id, request_subject
from ..config import public_base
from ..fhir.errors import BadRequest
from ..operations import JOBS_ALL_SCOPE
from ..store.sql.jobs import Job

DEFAULT_COUNT, MAX_COUNT = 50, 200


def _parts(job: Job, base: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"name": "id", "valueString": job.id}, {"name": "kind", "valueCode": job.kind},
        {"name": "status", "valueCode": job.status}, {"name": "created", "valueInstant": job.created},
        {"name": "request", "valueString": job.request_url}]
    if job.client_id:
        parts.append({"name": "client", "valueString": job.client_id})
    if job.subject:
        parts.append({"name": "user", "valueString": job.subject})
    if job.message:
        parts.append({"name": "message", "valueString": job.message})
    if job.kind == "export":
        parts.append({"name": "statusUrl", "valueUrl": f"{base}/$export-status/{job.id}"})
    return parts


async def jobs(request: Request) -> Response:
    """The jobs the caller may see (``_count``: 1-200, default 50), as Parameters with a ``job`` per job and
    the ``total`` it may see."""
    raw = request.query_params.get("_count") or str(DEFAULT_COUNT)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_COUNT:
        raise BadRequest(f"_count {raw!r}: give a whole number from 1 to {MAX_COUNT}")
    grant = getattr(request.state, "grant", None)
    client, subject = request_client_id(request), request_subject(request)
    owner: tuple[str | None, str | None] | None = None
    user = None
    if grant is not None and not grant.system and JOBS_ALL_SCOPE not in grant.scopes.other:
        owner = (client, subject)
        user = subject if subject is not None and subject != client else None
    store = request.app.state.jobs.jobs
    found, total = await run_in_threadpool(store.listing, int(raw), owner, user)
    base = public_base(str(request.app.state.settings.fhir_base())).rstrip("/")
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "total", "valueInteger": total}, *({"name": "job", "part": _parts(j, base)} for j in found)]}
    return fhir_response(body, is_pretty=pretty(request))
