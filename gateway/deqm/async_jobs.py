"""Asynchronous operation runs in the Bulk Data style (`Prefer: respond-async`): the job is a Task in the store
(so any server process can answer its status), the work runs on a background thread of the process that
accepted it, and the result is a Binary holding NDJSON (one resource per line). A job whose process stops
before it finishes stays in-progress; delete it and ask again.

The work runs under the grant of the caller that started the job (taken when it starts), so it reaches only
what that caller may; the job's own Task and Binary are the server's bookkeeping, kept under the SYSTEM
grant."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson

from ..auth.context import SYSTEM, acting_as, current_grant
from ..fhir.dates import now_instant
from ..fhir.errors import FhirError, NotFound
from ..resources.rest import resource_json

log = logging.getLogger("gateway")
JOB_SYSTEM = "urn:fhir-vbc-gateway:async-job"
NDJSON = "application/fhir+ndjson"


class AsyncJobs:
    def __init__(self, rest: Any) -> None:
        self.rest = rest

    def start(self, operation: str, request_url: str, work: Callable[[], list[dict[str, Any]]]) -> str:
        task = {"resourceType": "Task", "status": "in-progress", "intent": "order",
                "identifier": [{"system": JOB_SYSTEM, "value": operation}],
                "code": {"text": f"${operation}"}, "authoredOn": now_instant(),
                "input": [{"type": {"text": "request"}, "valueString": request_url}]}
        grant = current_grant()  # the caller's: the work runs under it
        with acting_as(SYSTEM):
            job_id = self.rest.create("Task", task).stored.id
        threading.Thread(target=self._run, args=(job_id, work, grant), name=f"job-{job_id}", daemon=True).start()
        return job_id

    def _run(self, job_id: str, work: Callable[[], list[dict[str, Any]]], grant: Any = SYSTEM) -> None:
        with acting_as(SYSTEM):
            self._work(job_id, work, grant)

    def _work(self, job_id: str, work: Callable[[], list[dict[str, Any]]], grant: Any) -> None:
        try:
            with acting_as(grant):
                resources = work()
            data = b"".join(orjson.dumps(r) + b"\n" for r in resources)
            binary = self.rest.create("Binary", {"resourceType": "Binary", "contentType": NDJSON,
                                                 "data": base64.b64encode(data).decode()}).stored
            self._finish(job_id, "completed", output=[{"type": {"text": "Bundle"},
                                                       "valueReference": {"reference": f"Binary/{binary.id}"}},
                                                      {"type": {"text": "count"}, "valueInteger": len(resources)}])
        except FhirError as exc:
            self._finish(job_id, "failed", reason=exc.diagnostics)
        except Exception as exc:  # noqa: BLE001 - a background job must record every failure
            log.exception("async job failed", extra={"job": job_id})
            self._finish(job_id, "failed", reason=f"{type(exc).__name__}: {exc}")

    def _finish(self, job_id: str, status: str, output: list[dict[str, Any]] | None = None,
                reason: str | None = None) -> None:
        try:
            task = self.task(job_id)
        except FhirError:
            return  # deleted (cancelled) while running
        task["status"] = status
        task["lastModified"] = now_instant()
        if output:
            task["output"] = output
        if reason:
            task["statusReason"] = {"text": reason}
        with acting_as(SYSTEM):
            self.rest.update("Task", job_id, task)

    def task(self, job_id: str) -> dict[str, Any]:
        with acting_as(SYSTEM):  # the job record is the server's (the route's policy decided who may ask)
            task = resource_json(self.rest.read("Task", job_id))
        if not any(i.get("system") == JOB_SYSTEM for i in task.get("identifier") or []):
            raise NotFound(f"No asynchronous job {job_id}")
        return task

    def output(self, job_id: str) -> bytes:
        task = self.task(job_id)
        ref = next((o["valueReference"]["reference"] for o in task.get("output") or [] if "valueReference" in o),
                   None)
        if task.get("status") != "completed" or ref is None:
            raise NotFound(f"Job {job_id} has no output yet")
        with acting_as(SYSTEM):
            binary = resource_json(self.rest.read(*ref.split("/", 1)))
        return base64.b64decode(binary.get("data") or "")

    def delete(self, job_id: str) -> None:
        task = self.task(job_id)
        with acting_as(SYSTEM):
            for o in task.get("output") or []:
                if "valueReference" in o:
                    self.rest.delete(*o["valueReference"]["reference"].split("/", 1))
            self.rest.delete("Task", job_id)
