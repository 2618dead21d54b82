"""Asynchronous operation runs in the Bulk Data style (``Prefer: respond-async``) on the job core: the request
is checked, stored as a job row (its inputs, the caller and the caller's recorded grant) and answered 202; a
job worker of any gateway instance runs it (resources/jobs.py) and stores the NDJSON result in the row, so
the status and output endpoints answer on any instance, and a job whose instance died is taken over by
another one and finished once.

The work runs under the recorded grant of the caller that started the job, through the store gate, so it
reaches only what that caller may; only that caller (the same client and user) may read its status and
output."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..auth.context import acting_as, current_grant
from ..auth.grant_record import record, restore
from ..fhir.dates import now_instant
from ..fhir.errors import FhirError, NotFound
from ..resources.jobs import Heartbeat, JobWorker, runs_jobs
from ..store.sql.jobs import Job

log = logging.getLogger("gateway.jobs")
NDJSON = "application/fhir+ndjson"
MAX_REQUEST_URL = 2048  # what job.request_url holds
Work = Callable[[dict[str, Any]], list[dict[str, Any]]]  # a job's stored input -> the resources it returns


class Forbidden(FhirError):
    status, code = 403, "forbidden"


class _OperationJobs:
    """The job handler of one asynchronous operation kind: run the work under the job's grant, store the
    result. The work cannot stop half-way: on shutdown its lease is handed back and it can no longer finish
    the job, which another instance runs again from the start."""

    def __init__(self, owner: AsyncJobs, work: Work) -> None:
        self.owner = owner
        self.work = work

    def run(self, job: Job, heart: Heartbeat) -> str:
        jobs = self.owner.jobs
        expires = time.time() + self.owner.retention_seconds
        grant = restore(job.params.get("grant"))
        if grant is None:
            jobs.finish(job.id, "failed", {}, expires, "The job does not record on whose behalf it runs")
            return "failed"
        try:
            with acting_as(grant):
                resources = self.work(job.params.get("input") or {})
        except FhirError as exc:
            return "failed" if jobs.finish(job.id, "failed", {}, expires, exc.diagnostics) else "lost"
        except Exception as exc:  # noqa: BLE001 - a background job records every failure
            log.exception("job %s failed", job.id)
            ok = jobs.finish(job.id, "failed", {}, expires, f"{type(exc).__name__}: {exc}")
            return "failed" if ok else "lost"
        data = b"".join(orjson.dumps(r) + b"\n" for r in resources)
        if jobs.finish(job.id, "complete", {"count": len(resources)}, expires, result=data):
            return "complete"
        return "cancelled" if heart.cancelled else "lost"

    def discard(self, job_id: str) -> None:
        """Nothing outside the row (the result is in it)."""

    def stop(self) -> None:
        """Nothing to interrupt: the lease is handed back by the worker."""


class AsyncJobs:
    """Start asynchronous operation runs and answer their status and output, for the caller that started
    them."""

    def __init__(self, worker: JobWorker, measures: Any, settings: Any) -> None:
        self.worker = worker
        self.jobs = worker.jobs
        self.measures = measures
        self.settings = settings
        self.retention_seconds = float(settings.export_retention_seconds)

    def register(self, operation: str, work: Work) -> None:
        """Run jobs of ``operation`` (the job kind) with ``work``."""
        self.worker.register(operation, _OperationJobs(self, work))

    @property
    def requires_token(self) -> bool:
        return self.settings.auth != "off"

    def start(self, operation: str, request_url: str, inputs: dict[str, Any], client_id: str | None,
              subject: str | None) -> str:
        """Queue a run of ``operation`` with its (already checked) inputs, owned by the caller and under the
        caller's grant; returns the job id."""
        if not runs_jobs(self.settings, self.worker.jobs.store):
            raise FhirError("Asynchronous runs need a database file or server and the job worker; ask without "
                            "Prefer: respond-async", status=503, code="not-supported")
        limit = self.settings.export_max_active_jobs
        if self.jobs.active_count(client_id, operation) >= limit:
            raise FhirError(f"This client already has {limit} ${operation} jobs in progress; wait for one to "
                            "finish", status=429, code="throttled", headers={"Retry-After": "30"})
        if len(request_url) > MAX_REQUEST_URL:
            request_url = request_url.split("?", 1)[0]
        params = {"input": inputs, "grant": record(current_grant())}
        job = Job(uuid.uuid4().hex, "queued", client_id, request_url, params, now_instant(), now_instant(),
                  subject=subject, kind=operation)
        self.jobs.create(job)
        self.worker.wake()
        return job.id

    def owned(self, operation: str, job_id: str, client_id: str | None, subject: str | None) -> Job:
        """The job, when it is a run of ``operation`` started by this client and user (404 / 403 otherwise)."""
        job = self.jobs.get(job_id)
        if job is None or job.kind != operation or job.status == "cancelled" or (
                job.expires is not None and job.expires < time.time()):
            raise NotFound(f"No asynchronous ${operation} job {job_id}: it never existed, was deleted or expired")
        if job.client_id != client_id or job.subject != subject:
            raise Forbidden("This job belongs to another client or user")
        return job

    def output(self, operation: str, job_id: str, client_id: str | None, subject: str | None) -> bytes:
        """The NDJSON result of a finished run."""
        job = self.owned(operation, job_id, client_id, subject)
        data = self.jobs.result(job_id) if job.status == "complete" else None
        if data is None:
            raise NotFound(f"Job {job_id} has no output yet")
        return data

    def delete(self, operation: str, job_id: str, client_id: str | None, subject: str | None) -> None:
        """Cancel a run (a running one stops counting) and remove it."""
        self.owned(operation, job_id, client_id, subject)
        self.jobs.cancel(job_id)
