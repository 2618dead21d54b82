"""The Bulk Data export service: kick-off, status and manifest, cancel, file lookup, with job ownership.

HTTP-free: routes in gateway/bulk/handlers.py translate requests into these calls.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from ..auth.context import constrain_search, current_grant
from ..auth.grant_record import record, restore, still_allows
from ..config import public_base
from ..fhir.dates import now_instant
from ..fhir.errors import BadRequest, FhirError, NotFound
from ..resources.jobs import JobWorker, runs_jobs
from ..search.params import patient_compartment
from ..search.query import QueryParser
from ..store.sql.jobs import Job, JobStore
from .request import ExportRequest, parse_export
from .runner import ExportRunner, job_dir, new_job_id

MAX_REQUEST_URL = 2048  # the length export_job.request_url holds (store/sql/tables.py)
if TYPE_CHECKING:
    from ..store.sql.store import SqlStore


class TooManyRequests(FhirError):
    status, code = 429, "throttled"


class Forbidden(FhirError):
    status, code = 403, "forbidden"


def manifest(job: Job, base: str, requires_token: bool) -> dict[str, Any]:
    p = job.progress

    def items(key: str) -> list[dict[str, Any]]:
        return [{"type": o["type"], "url": f"{base}/$export-file/{job.id}/{o['file']}", "count": o["count"]}
                for o in p.get(key, [])]

    out: dict[str, Any] = {"transactionTime": job.transaction_time, "request": job.request_url,
                           "requiresAccessToken": requires_token, "output": items("outputs"),
                           "error": items("errors")}
    if p.get("deleted"):
        out["deleted"] = items("deleted")
    return out


def progress_text(job: Job) -> str:
    p = job.progress
    steps = p.get("steps") or []
    if job.status == "queued" or not steps:
        return "queued"
    i = min(p.get("step", 0), len(steps) - 1)
    return f"{p.get('written', 0)} resources written; {steps[i][1]} ({i + 1} of {len(steps)} steps)"[:99]


class BulkService:
    """Bulk export on the job core: kick-offs queue ``export`` jobs in the shared job table, the process's job
    worker (``worker``, shared with the other job kinds) runs them with the export runner."""

    def __init__(self, store: SqlStore, settings: Any, base_url: str, worker: JobWorker) -> None:
        self.store = store
        self.settings = settings
        self.configured_base = base_url
        self.compartment = patient_compartment()
        self.worker = worker
        self.jobs: JobStore = worker.jobs
        self.export_dir = Path(settings.export_dir).absolute()
        self.runner = ExportRunner(store, self.jobs, self.export_dir, self.compartment,
                                   settings.export_max_file_bytes, settings.export_retention_seconds,
                                   opt_out=settings.provider_access_opt_out)
        self.runner.beat_seconds = worker.beat_seconds
        worker.register("export", self.runner)
        self._polled: dict[str, float] = {}

    @property
    def base_url(self) -> str:
        """The FHIR base of status and file URLs: the current request's when derived from requests, else
        the configured one (``config.public_base``)."""
        return public_base(self.configured_base)

    @property
    def requires_token(self) -> bool:
        return self.settings.auth != "off"

    @property
    def runs_worker(self) -> bool:
        return runs_jobs(self.settings, self.store)

    # -- kick-off ----------------------------------------------------------------------------------------
    def parse(self, level: str, params: list[tuple[str, str]], group_id: str | None, lenient: bool, method: str,
              atr: bool) -> ExportRequest:
        req = parse_export(level, params, self.compartment, group_id, lenient, method, atr)
        parser = QueryParser(strict=True)
        for tf in req.type_filters:  # fail now, not in the worker
            rtype, _, query = tf.partition("?")
            # the search-scope rules of a REST search: chains and _has may reach only searchable types (403)
            constrain_search(parser.parse(rtype, parse_qsl(query, keep_blank_values=True)), parser)
        return req

    def kickoff(self, req: ExportRequest, client_id: str | None, request_url: str,
                subject: str | None = None) -> str:
        """Queue an export job owned by the client and the subject (the token's ``sub``: the signed-in user,
        or the backend client itself) that started it; returns the job id."""
        if self.settings.export_worker and not self.runs_worker:
            raise FhirError("Bulk export needs a database file or server: this gateway runs on an in-memory "
                            "database", status=503, code="not-supported")
        if len(request_url) > MAX_REQUEST_URL:  # the job keeps it (export_job.request_url) for the manifest
            raise BadRequest(f"The kick-off URL is longer than {MAX_REQUEST_URL} characters; send the parameters "
                             "in a POST Parameters body, or name each _type once")
        if self.jobs.active_count(client_id, "export") >= self.settings.export_max_active_jobs:
            raise TooManyRequests(f"This client already has {self.settings.export_max_active_jobs} exports in "
                                  "progress; wait for one to finish", headers={"Retry-After": "30"})
        # the job runs later, in the worker, under the grant of the caller starting it (bulk/runner.py)
        params = {**req.to_json(), "grant": record(current_grant())}
        job = Job(new_job_id(), "queued", client_id, request_url, params, now_instant(), now_instant(),
                  subject=subject)
        self.jobs.create(job)
        self.worker.wake()
        return job.id

    def status_url(self, job_id: str) -> str:
        return f"{self.base_url}/$export-status/{job_id}"

    # -- status, cancel, files ---------------------------------------------------------------------------
    def owned_job(self, job_id: str, client_id: str | None, subject: str | None = None) -> Job:
        """The job, when the caller is its owner: the same client *and* the same subject (user) that
        started it. Another user of the same app gets 403 like another client does."""
        job = self.jobs.get(job_id)
        if job is None or (job.expires is not None and job.expires < time.time() and job.status != "cancelled"):
            raise NotFound(f"No export job {job_id}: it never existed, was cancelled or has expired")
        if job.client_id != client_id or job.subject != subject:
            raise Forbidden("This export job belongs to another client or user")
        if job.status == "cancelled":
            raise NotFound(f"Export job {job_id} was cancelled")
        return job

    def check_grant(self, job: Job) -> None:
        """A finished job's manifest and files are handed out only while the caller's grant still allows
        reading what the job read: a client whose scopes were reduced (or whose fhirUser or patient changed)
        since the kick-off gets 403 and must start a new export. A revoked client has no valid token and is
        refused before this point (401)."""
        then = restore(job.params.get("grant"))
        types = sorted({str(o["type"]) for o in job.progress.get("outputs", [])}
                       | {str(step[1]) for step in job.progress.get("steps", [])})
        if then is None or not still_allows(current_grant(), then, types):
            raise Forbidden("The access this client or user had when the export started has changed since; "
                            "start a new export")

    def poll(self, job_id: str, client_id: str | None, subject: str | None = None) -> Job:
        job = self.owned_job(job_id, client_id, subject)
        if job.status == "complete":
            self.check_grant(job)
        now = time.monotonic()
        last = self._polled.get(job_id)
        wait = self.settings.export_poll_min_seconds
        if job.status in ("queued", "running") and last is not None and now - last < wait:
            raise TooManyRequests(f"Polled too soon: wait {wait:g} s between status requests",
                                  headers={"Retry-After": str(max(1, round(wait)))})
        self._polled[job_id] = now
        return job

    def retry_after(self) -> str:
        return str(max(1, round(self.settings.export_poll_min_seconds)))

    def expires_header(self, job: Job) -> dict[str, str]:
        return {"Expires": formatdate(job.expires, usegmt=True)} if job.expires else {}

    def cancel(self, job_id: str, client_id: str | None, subject: str | None = None) -> None:
        self.owned_job(job_id, client_id, subject)
        self.jobs.cancel(job_id)
        self._polled.pop(job_id, None)  # a running job's worker removes its files; cleanup removes the rest

    def file_path(self, job_id: str, name: str, client_id: str | None, subject: str | None = None) -> Path:
        job = self.owned_job(job_id, client_id, subject)
        if job.status != "complete":
            raise NotFound(f"Export job {job_id} has no files yet")
        self.check_grant(job)
        names = {o["file"] for key in ("outputs", "errors", "deleted") for o in job.progress.get(key, [])}
        if name not in names:
            raise NotFound(f"Export job {job_id} has no file {name!r}")
        path = job_dir(self.export_dir, job_id) / name
        if not path.exists():
            raise NotFound(f"The file {name} of export job {job_id} is gone")
        return path
