"""Ingest runs, recorded and read back.

Every run, from the command line (``fhir-gateway ingest``) or over HTTP (``POST $ingest/<format>``), is kept in
table ``ingest_run`` (``store/sql/feeds.py``): who ran it (the token's client and user; the CLI is the local
operator), the format and file names, start and end, the counts, the first ``MAX_REJECTS`` rejects with their
file, line and reason (the count stays exact) and the whole data-quality report.

They are read through the declared operations ``GET [base]/$ingest-runs`` (newest first) and
``GET [base]/$ingest-runs/[id]`` (one run with its rejects and report). A run is not a FHIR resource and lies in
no patient's compartment, so the store gate's type scopes cannot decide who sees it: the declarations require
the gateway-defined scope ``gateway.feeds.read`` (``operations.FEEDS_SCOPE``) at user or system level
(``ingest/declarations.py``), checked by the auth middleware before these handlers run.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.http import fhir_response, pretty
from ..api.identity import request_client_id, request_subject
from ..fhir.errors import BadRequest, NotFound
from ..store.sql.feeds import IngestRun, IngestRuns, now_instant
from .service import IngestSummary

MAX_REJECTS = 200  # reject examples kept per run; ``rejected`` keeps the exact count
LOCAL_OPERATOR = "local-operator"  # the subject of a command-line run
DEFAULT_COUNT, MAX_COUNT = 20, 100
RUN_ID_CHARS = frozenset("0123456789abcdef")


def split_where(where: str) -> tuple[str, int | None]:
    """``file:line`` (or ``file:line:…``) as (file, line); (where, None) when it names no line."""
    name, sep, rest = where.partition(":")
    line = rest.split(":", 1)[0]
    return (name, int(line)) if sep and line.isdigit() else (where, None)


def run_of(summary: IngestSummary, files: list[str], via: str, started: str, client_id: str | None,
           subject: str | None) -> IngestRun:
    """The record of a finished run: counts from the summary, the first rejects, the data-quality report."""
    rejects = []
    for r in summary.rejects[:MAX_REJECTS]:
        file, line = split_where(r.where)
        rejects.append({"file": file, "line": line, "where": r.where, "reason": r.reason, "field": r.field})
    return IngestRun(uuid.uuid4().hex, summary.format, via, client_id, subject, files, summary.strictness,
                     summary.mapping_version, started, now_instant(), summary.records, summary.created,
                     summary.updated, summary.unchanged, len(summary.rejects), summary.units_with_warnings,
                     rejects, summary.quality())


def record(store: Any, summary: IngestSummary, files: list[str], via: str, started: str,
           client_id: str | None = None, subject: str | None = None) -> IngestRun:
    """Record a finished run in ``store``'s database (the raw SQL store: a run is the gateway's own
    bookkeeping, not a resource) and return it."""
    run = run_of(summary, files, via, started, client_id, subject)
    IngestRuns(store).record(run)
    return run


def _summary_parts(run: IngestRun) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"name": "id", "valueString": run.id}, {"name": "format", "valueCode": run.format},
        {"name": "via", "valueCode": run.via}, {"name": "started", "valueInstant": run.started},
        {"name": "ended", "valueInstant": run.ended}]
    if run.client_id:
        parts.append({"name": "client", "valueString": run.client_id})
    if run.subject:
        parts.append({"name": "user", "valueString": run.subject})
    if run.strictness:
        parts.append({"name": "strictness", "valueCode": run.strictness})
    if run.mapping_version:
        parts.append({"name": "mappingVersion", "valueString": run.mapping_version})
    parts += [{"name": "file", "valueString": f} for f in run.files]
    parts += [{"name": k, "valueInteger": v} for k, v in (
        ("records", run.records), ("created", run.created), ("updated", run.updated),
        ("unchanged", run.unchanged), ("rejected", run.rejected), ("loadedWithWarnings", run.warned))]
    return parts


def run_parameters(run: IngestRun) -> dict[str, Any]:
    """One run with its reject examples and its data-quality report (JSON attachment) as Parameters."""
    parts = _summary_parts(run)
    for r in run.rejects:
        sub: list[dict[str, Any]] = [{"name": "file", "valueString": str(r["file"])},
                                     {"name": "reason", "valueString": str(r["reason"])}]
        if r.get("line") is not None:
            sub.insert(1, {"name": "line", "valueInteger": int(r["line"])})
        if r.get("field"):
            sub.append({"name": "field", "valueString": str(r["field"])})
        parts.append({"name": "reject", "part": sub})
    data = base64.b64encode(orjson.dumps(run.report, option=orjson.OPT_SORT_KEYS)).decode()
    parts.append({"name": "report", "valueAttachment": {"contentType": "application/json", "data": data,
                                                        "title": "data-quality report"}})
    return {"resourceType": "Parameters", "parameter": [{"name": "run", "part": parts}]}


async def ingest_runs(request: Request) -> Response:
    """GET [base]/$ingest-runs: the newest runs (``_count``, default 20, at most 100; ``format`` narrows)."""
    raw = request.query_params.get("_count") or str(DEFAULT_COUNT)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_COUNT:
        raise BadRequest(f"_count {raw!r}: give a whole number from 1 to {MAX_COUNT}")
    fmt = request.query_params.get("format") or None
    store = request.app.state.store
    runs, total = await run_in_threadpool(IngestRuns(store).recent, int(raw), fmt)
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "total", "valueInteger": total}, *({"name": "run", "part": _summary_parts(r)} for r in runs)]}
    return fhir_response(body, is_pretty=pretty(request))


async def ingest_run(run_id: str, request: Request) -> Response:
    """GET [base]/$ingest-runs/[id]: one run with its rejects (file, line, reason) and data-quality report."""
    if not run_id or len(run_id) > 64 or not set(run_id) <= RUN_ID_CHARS:
        raise NotFound(f"No ingest run {run_id[:64]!r}")
    run = await run_in_threadpool(IngestRuns(request.app.state.store).get, run_id)
    if run is None:
        raise NotFound(f"No ingest run {run_id!r}")
    return fhir_response(run_parameters(run), is_pretty=pretty(request))


def caller(request: Request) -> tuple[str | None, str | None]:
    """The client and user of the request (None, None under ``--auth off``: the local operator)."""
    client = request_client_id(request)
    return client, request_subject(request) or (None if client else LOCAL_OPERATOR)
